// The training objective of DeepSeek-V3 (Eq. 24-25 and 17):
//   L = L_main + (lambda / D) * sum_k L_MTP^k + alpha * sum_layers L_bal
// with L_MTP^k = -(1/T) sum_{i} log P_i^k[t_i] over the T-k positions that have a depth-k target:
// the sum is divided by T (the main loss's token count), not by T-k.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "nextn/model/deepseek_v3.h"

namespace nextn {

struct ObjectiveOptions {
  double mtp_lambda = 0.3;              // V3: 0.3 for the first 10T tokens, then 0.1
  double sequence_balance_alpha = 0.0;  // V3: 1e-4 (complementary sequence-wise loss)
  double batch_balance_alpha = 0.0;     // the classic auxiliary-loss baseline
  int64_t ignore_index = -100;          // labels equal to this are not predicted
};

struct ObjectiveOutput {
  torch::Tensor total;                      // scalar to run backward on
  torch::Tensor main_loss;                  // mean next-token cross-entropy
  std::vector<torch::Tensor> mtp_loss;      // L_MTP^k for k = 1..D
  torch::Tensor balance_loss;               // alpha-weighted balance terms, summed over MoE layers
  torch::Tensor main_accuracy;              // top-1 accuracy of next-token prediction
  std::vector<torch::Tensor> mtp_accuracy;  // top-1 accuracy at each depth
  int64_t main_tokens = 0;                  // positions with a main target
  std::vector<int64_t> mtp_tokens;          // positions with a depth-k target
};

// labels int64 [B, T]: labels[:, i] = t_{i+1} (the window shifted by one). segment_ids, when
// defined, is [B, T+1] over the whole window: a depth-k target at position i counts only if
// segment_ids[i] == segment_ids[i+k+1], so no MTP target crosses into another document.
ObjectiveOutput compute_objective(const ModelOutput& output, const torch::Tensor& labels,
                                  const torch::Tensor& segment_ids, const ObjectiveOptions& options);

}  // namespace nextn
