#include "nextn/model/dense_mlp.h"

#include "nextn/kernels/row_ops.h"
#include "nextn/model/linear.h"

namespace nextn {

DenseMlpImpl::DenseMlpImpl(int64_t hidden_size, int64_t intermediate_size) {
  gate_proj = register_module("gate_proj", Linear(hidden_size, intermediate_size));
  up_proj = register_module("up_proj", Linear(hidden_size, intermediate_size));
  down_proj = register_module("down_proj", Linear(intermediate_size, hidden_size));
}

torch::Tensor DenseMlpImpl::forward(const torch::Tensor& x) {
  if (takes_few_rows_kernels(x, gate_proj->weight, gate_proj->weight.size(1))) {
    // Decoding's few rows: the gating element by element (kernels::swiglu), row for row the same
    // whatever the number of rows.
    auto gate = gate_proj(x), up = up_proj(x);
    auto act = torch::empty_like(gate);
    kernels::swiglu(gate.data_ptr<float>(), up.data_ptr<float>(), gate.numel(), act.data_ptr<float>());
    return down_proj(act);
  }
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
}

}  // namespace nextn
