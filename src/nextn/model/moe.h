// DeepSeekMoE layer (DeepSeek-V3 Eq. 12): h' = u + sum_i FFN_shared_i(u) + sum_i g_i FFN_routed_i(u)
// (the residual u is added by the decoder layer). Returns, besides the output, what training
// needs from the layer: per-expert token counts and the balance terms.
#pragma once

#include <torch/torch.h>

#include "nextn/config/model_config.h"
#include "nextn/model/dense_mlp.h"
#include "nextn/model/routed_experts.h"
#include "nextn/model/router.h"

namespace nextn {

struct MoeStats {
  torch::Tensor expert_counts;     // int64 [E]: tokens routed to each expert in this forward
  torch::Tensor sequence_balance;  // scalar, Eq. 17 without alpha, differentiable
  torch::Tensor batch_balance;     // scalar, the batch-level (classic auxiliary) term
  torch::Tensor expert_ids;        // int64 [B*T, K]: the routing decisions, for tests and tools
};

class MoeImpl : public torch::nn::Module {
 public:
  explicit MoeImpl(const ModelConfig& config);
  // x [B, T, hidden] -> [B, T, hidden]; stats filled in when not null.
  torch::Tensor forward(const torch::Tensor& x, MoeStats* stats = nullptr);

  MoeGate gate{nullptr};
  RoutedExperts experts{nullptr};
  DenseMlp shared_experts{nullptr};  // null when n_shared_experts == 0

 private:
  // Decoding's few tokens in float32 on CPU: the shared expert runs among the routed experts' jobs
  // (RoutedExpertsImpl::forward_few_tokens), with the same result as after them.
  bool shared_expert_joins_routed(const torch::Tensor& x_flat) const;
  SharedExpertRows shared_expert_rows() const;
};
TORCH_MODULE(Moe);

}  // namespace nextn
