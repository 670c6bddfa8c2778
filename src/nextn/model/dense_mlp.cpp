#include "nextn/model/dense_mlp.h"

namespace nextn {

DenseMlpImpl::DenseMlpImpl(int64_t hidden_size, int64_t intermediate_size) {
  gate_proj = register_module("gate_proj", Linear(hidden_size, intermediate_size));
  up_proj = register_module("up_proj", Linear(hidden_size, intermediate_size));
  down_proj = register_module("down_proj", Linear(intermediate_size, hidden_size));
}

torch::Tensor DenseMlpImpl::forward(const torch::Tensor& x) {
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
}

}  // namespace nextn
