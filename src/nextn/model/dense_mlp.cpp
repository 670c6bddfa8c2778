#include "nextn/model/dense_mlp.h"

namespace nextn {

torch::nn::Linear linear_no_bias(int64_t in_features, int64_t out_features) {
  return torch::nn::Linear(torch::nn::LinearOptions(in_features, out_features).bias(false));
}

DenseMlpImpl::DenseMlpImpl(int64_t hidden_size, int64_t intermediate_size) {
  gate_proj = register_module("gate_proj", linear_no_bias(hidden_size, intermediate_size));
  up_proj = register_module("up_proj", linear_no_bias(hidden_size, intermediate_size));
  down_proj = register_module("down_proj", linear_no_bias(intermediate_size, hidden_size));
}

torch::Tensor DenseMlpImpl::forward(const torch::Tensor& x) {
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
}

}  // namespace nextn
