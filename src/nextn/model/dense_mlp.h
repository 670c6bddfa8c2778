// SwiGLU feed-forward (Shazeer 2020): down(silu(gate(x)) * up(x)). Used for the first
// `first_k_dense_replace` layers and, with moe_intermediate_size x n_shared_experts, for the
// shared experts of every MoE layer (HF stores those as one MLP, `mlp.shared_experts`).
#pragma once

#include <torch/torch.h>

#include "nextn/model/linear.h"

namespace nextn {

class DenseMlpImpl : public torch::nn::Module {
 public:
  DenseMlpImpl(int64_t hidden_size, int64_t intermediate_size);
  torch::Tensor forward(const torch::Tensor& x);

  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(DenseMlp);

}  // namespace nextn
