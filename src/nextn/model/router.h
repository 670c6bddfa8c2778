// DeepSeek-V3 routing ("noaux_tc"), Eq. 13-16 of the technical report:
//   s_{i,t}  = sigmoid(u_t . e_i)                      affinity of token t for routed expert i
//   selected = TopK(s_{i,t} + b_i), limited to the best topk_group of n_group expert groups
//   g_{i,t}  = s_{i,t} / sum_{j selected} s_{j,t} * routed_scaling_factor   (bias NOT included)
// The bias b (e_score_correction_bias) only steers selection; it is fp32, outside the optimiser,
// and updated from expert loads (auxiliary-loss-free balancing, training/expert_bias).
#pragma once

#include <torch/torch.h>

#include "nextn/config/model_config.h"

namespace nextn {

struct Routing {
  torch::Tensor scores;      // [N, E] sigmoid affinities, differentiable (compute dtype)
  torch::Tensor expert_ids;  // int64 [N, K] chosen experts, in descending biased-score order
  torch::Tensor weights;     // [N, K] gate weights g of the chosen experts, differentiable
};

// Selection and weights from given affinities: the pure routing rule, testable on its own.
Routing route_tokens(const torch::Tensor& scores, const torch::Tensor& bias, const ModelConfig& config);

// The same rule for a few float32 tokens on CPU as plain loops over each token's scores (route_tokens
// takes ~25 libtorch operators per call, 20 us on `small`): what decoding's MoeGate uses. The same
// selection barring exact ties (here the lower expert or group index wins; libtorch's topk does
// not say), weights equal to float rounding. Scores or a bias with a NaN take route_tokens.
Routing route_few_tokens(const torch::Tensor& scores, const torch::Tensor& bias, const ModelConfig& config);

// Group-limited routing (node-limited routing, section 2.1.2): a group's score is the sum of its
// config.group_score_topk largest biased scores (2, as DeepSeek's and HF's code); the experts outside the best topk_group groups get -inf (not 0:
// a 0 fill lets masked experts win when biased scores are negative).
torch::Tensor mask_to_top_groups(const torch::Tensor& biased_scores, const ModelConfig& config);

// The fraction of a's expert choices that b did not make for the same token: ids int64 [N, K],
// order within a row ignored. How often bf16 changes routing against fp32 (`nextn bench train`).
double changed_expert_choices(const torch::Tensor& ids_a, const torch::Tensor& ids_b);

class MoeGateImpl : public torch::nn::Module {
 public:
  explicit MoeGateImpl(const ModelConfig& config);
  Routing forward(const torch::Tensor& x_flat);  // x_flat [N, hidden]

  torch::Tensor weight;                   // [E, hidden]
  torch::Tensor e_score_correction_bias;  // [E], fp32 buffer

 private:
  ModelConfig config_;
};
TORCH_MODULE(MoeGate);

}  // namespace nextn
