// Load-balance measures of one MoE layer.
//
// Complementary sequence-wise balance loss (DeepSeek-V3 Eq. 17-20), per sequence of length T:
//   f_i = N_r / (K_r T) * #{t : s_{i,t} in Topk({s_{j,t}}, K_r)}  (no gradient; Eq. 18's top-K
//         of the unbiased affinities, which the MoE layer passes as expert_ids)
//   P_i = 1/T * sum_t s_{i,t} / sum_j s_{j,t}
//   L_bal = alpha * sum_i f_i P_i, averaged over the sequences of the batch.
// The batch-level variant (the classic "loss-controlled" auxiliary loss of DeepSeek-V2 / GShard
// with sigmoid scores normalised as in Eq. 19) is the same formula over all tokens of the batch,
// counting the experts actually selected (DeepSeek-V2's f_i).
// The terms here exclude alpha; the training objective scales them.
#pragma once

#include <torch/torch.h>

namespace nextn {

// scores [B*T, E] (differentiable), expert_ids int64 [B*T, K]; returns a scalar.
torch::Tensor sequence_balance_term(const torch::Tensor& scores, const torch::Tensor& expert_ids,
                                    int64_t batch, int64_t length);
torch::Tensor batch_balance_term(const torch::Tensor& scores, const torch::Tensor& expert_ids);

// Tokens routed to each expert: int64 [E].
torch::Tensor expert_token_counts(const torch::Tensor& expert_ids, int64_t num_experts);

// MaxVio = (max_i load_i - mean load) / mean load (aux-loss-free paper, arXiv 2408.15664).
double max_violation(const torch::Tensor& expert_counts);

}  // namespace nextn
