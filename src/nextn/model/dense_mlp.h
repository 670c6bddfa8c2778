// SwiGLU feed-forward (Shazeer 2020): down(silu(gate(x)) * up(x)). Used for the first
// `first_k_dense_replace` layers and, with moe_intermediate_size x n_shared_experts, for the
// shared experts of every MoE layer (HF stores those as one MLP, `mlp.shared_experts`).
#pragma once

#include <torch/torch.h>

namespace nextn {

class DenseMlpImpl : public torch::nn::Module {
 public:
  DenseMlpImpl(int64_t hidden_size, int64_t intermediate_size);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(DenseMlp);

// A bias-free linear layer, the only kind DeepSeek-V3 uses.
torch::nn::Linear linear_no_bias(int64_t in_features, int64_t out_features);

}  // namespace nextn
