#include "nextn/model/router.h"

#include <limits>

#include "nextn/model/linear.h"
#include "nextn/model/rms_norm.h"

namespace nextn {

torch::Tensor mask_to_top_groups(const torch::Tensor& biased_scores, const ModelConfig& config) {
  if (config.n_group <= 1 || config.topk_group >= config.n_group) return biased_scores;
  const int64_t tokens = biased_scores.size(0);
  const int64_t per_group = config.n_routed_experts / config.n_group;
  const int64_t scores_per_group = config.num_experts_per_tok / config.topk_group;
  auto grouped = biased_scores.view({tokens, config.n_group, per_group});
  // The sum of each group's `scores_per_group` largest scores, by repeated max reductions rather
  // than topk: libtorch's CPU topk runs a partial sort per row, and over N * n_group short rows it
  // was the part of routing that grew with the expert count (`nextn bench moe`: 1.4 ms against
  // 0.45 ms at 64 experts). The sum of the largest values does not depend on how ties are broken.
  torch::Tensor group_scores;  // [N, n_group]
  auto remaining = grouped;
  for (int64_t i = 0; i < scores_per_group; ++i) {
    auto best = remaining.max(-1, /*keepdim=*/true);
    auto value = std::get<0>(best).squeeze(-1);
    group_scores = i == 0 ? value : group_scores + value;
    if (i + 1 < scores_per_group) {
      remaining = remaining.scatter(-1, std::get<1>(best), -std::numeric_limits<double>::infinity());
    }
  }
  auto kept_groups = std::get<1>(group_scores.topk(config.topk_group, -1));      // [N, topk_group]
  auto keep = torch::zeros({tokens, config.n_group}, biased_scores.options().dtype(torch::kBool))
                  .scatter(1, kept_groups, true);
  auto keep_experts = keep.unsqueeze(-1).expand({tokens, config.n_group, per_group}).reshape({tokens, -1});
  return biased_scores.masked_fill(keep_experts.logical_not(), -std::numeric_limits<double>::infinity());
}

Routing route_tokens(const torch::Tensor& scores, const torch::Tensor& bias, const ModelConfig& config) {
  torch::Tensor expert_ids;
  {
    torch::NoGradGuard no_grad;  // selection is discrete; the bias never receives a gradient
    auto biased = scores.detach() + bias.to(scores.scalar_type());
    auto candidates = mask_to_top_groups(biased, config);
    expert_ids = std::get<1>(candidates.topk(config.num_experts_per_tok, -1));
  }
  auto weights = scores.gather(1, expert_ids);
  if (config.norm_topk_prob && config.num_experts_per_tok > 1) {
    weights = weights / (weights.sum(-1, /*keepdim=*/true) + 1e-20);
  }
  return {scores, expert_ids, weights * config.routed_scaling_factor};
}

MoeGateImpl::MoeGateImpl(const ModelConfig& config) : config_(config) {
  weight = register_parameter("weight", torch::empty({config.n_routed_experts, config.hidden_size}));
  e_score_correction_bias =
      register_buffer("e_score_correction_bias", torch::zeros({config.n_routed_experts}, torch::kFloat));
}

Routing MoeGateImpl::forward(const torch::Tensor& x_flat) {
  // Affinities in at least fp32: selection among close scores must not depend on bf16 rounding.
  auto dtype = compute_dtype(x_flat.scalar_type());
  auto scores = torch::sigmoid(linear_no_bias(x_flat.to(dtype), weight.to(dtype)));
  return route_tokens(scores, e_score_correction_bias, config_);
}

}  // namespace nextn
