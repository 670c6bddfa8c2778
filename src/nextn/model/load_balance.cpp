#include "nextn/model/load_balance.h"

namespace nextn {

torch::Tensor expert_token_counts(const torch::Tensor& expert_ids, int64_t num_experts) {
  return torch::bincount(expert_ids.reshape({-1}), /*weights=*/{}, num_experts);
}

torch::Tensor sequence_balance_term(const torch::Tensor& scores, const torch::Tensor& expert_ids,
                                    int64_t batch, int64_t length) {
  const int64_t experts = scores.size(1);
  const int64_t k = expert_ids.size(1);
  auto normalised = scores / scores.sum(-1, /*keepdim=*/true);            // Eq. 19
  auto p = normalised.view({batch, length, experts}).mean(1);              // Eq. 20, [B, E]
  torch::Tensor f;
  {
    torch::NoGradGuard no_grad;                                            // Eq. 18
    f = torch::zeros({batch, experts}, scores.options())
            .scatter_add_(1, expert_ids.view({batch, length * k}),
                          torch::ones({batch, length * k}, scores.options()));
    f = f * (static_cast<double>(experts) / static_cast<double>(k * length));
  }
  return (f * p).sum(-1).mean();                                           // Eq. 17 / alpha
}

torch::Tensor batch_balance_term(const torch::Tensor& scores, const torch::Tensor& expert_ids) {
  return sequence_balance_term(scores, expert_ids, 1, scores.size(0));
}

double max_violation(const torch::Tensor& expert_counts) {
  auto counts = expert_counts.to(torch::kDouble);
  double mean = counts.mean().item<double>();
  if (mean == 0.0) return 0.0;
  return (counts.max().item<double>() - mean) / mean;
}

}  // namespace nextn
