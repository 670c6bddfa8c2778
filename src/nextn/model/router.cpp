#include "nextn/model/router.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <vector>

#include "nextn/device/precision.h"
#include "nextn/kernels/row_ops.h"
#include "nextn/model/linear.h"
#include "nextn/model/rms_norm.h"
#include "nextn/util/error.h"

namespace nextn {

torch::Tensor mask_to_top_groups(const torch::Tensor& biased_scores, const ModelConfig& config) {
  if (config.n_group <= 1 || config.topk_group >= config.n_group) return biased_scores;
  const int64_t tokens = biased_scores.size(0);
  const int64_t per_group = config.n_routed_experts / config.n_group;
  const int64_t scores_per_group = config.group_score_topk;
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

namespace {

// The index of the largest value among the allowed and not yet taken; the lower index on ties.
int64_t best_remaining(const std::vector<float>& values, const std::vector<char>& available) {
  int64_t best = -1;
  for (int64_t i = 0; i < static_cast<int64_t>(values.size()); ++i) {
    if (available[i] && (best < 0 || values[i] > values[best])) best = i;
  }
  return best;
}

// Experts outside the token's best topk_group groups become unavailable (mask_to_top_groups).
void keep_top_groups(const std::vector<float>& biased, const ModelConfig& config, std::vector<char>& available) {
  if (config.n_group <= 1 || config.topk_group >= config.n_group) return;
  const int64_t per_group = config.n_routed_experts / config.n_group;
  const int64_t scores_per_group = config.group_score_topk;
  std::vector<float> group_scores(config.n_group), members;
  for (int64_t g = 0; g < config.n_group; ++g) {
    members.assign(biased.begin() + g * per_group, biased.begin() + (g + 1) * per_group);
    std::partial_sort(members.begin(), members.begin() + scores_per_group, members.end(), std::greater<float>());
    float sum = members[0];  // added in descending order, as mask_to_top_groups does
    for (int64_t i = 1; i < scores_per_group; ++i) sum += members[i];
    group_scores[g] = sum;
  }
  std::vector<char> group_open(config.n_group, 1), group_kept(config.n_group, 0);
  for (int64_t r = 0; r < config.topk_group; ++r) {
    const int64_t g = best_remaining(group_scores, group_open);
    group_open[g] = 0;
    group_kept[g] = 1;
  }
  for (int64_t e = 0; e < config.n_routed_experts; ++e) available[e] = available[e] && group_kept[e / per_group];
}

}  // namespace

Routing route_few_tokens(const torch::Tensor& scores, const torch::Tensor& bias, const ModelConfig& config) {
  NEXTN_CHECK(scores.dim() == 2 && scores.size(1) == config.n_routed_experts && scores.device().is_cpu() &&
                  scores.scalar_type() == torch::kFloat && scores.is_contiguous(),
              "route_few_tokens needs contiguous float32 CPU scores [N, ", config.n_routed_experts, "], got ",
              scores.sizes());
  NEXTN_CHECK(bias.dim() == 1 && bias.size(0) == config.n_routed_experts, "the expert bias must be [",
              config.n_routed_experts, "], got ", bias.sizes());
  const int64_t tokens = scores.size(0), experts = config.n_routed_experts, k = config.num_experts_per_tok;
  auto bias_values = bias.to(torch::kCPU, torch::kFloat).contiguous();
  const float* b = bias_values.data_ptr<float>();
  // NaN has no place in the loops' orderings; route_tokens ranks it as topk does.
  const auto has_nan = [](const float* v, int64_t n) { return std::any_of(v, v + n, [](float f) { return f != f; }); };
  if (has_nan(b, experts) || has_nan(scores.data_ptr<float>(), tokens * experts)) {
    return route_tokens(scores, bias, config);
  }
  auto expert_ids = torch::empty({tokens, k}, torch::kLong);
  auto weights = torch::empty({tokens, k}, scores.options());
  std::vector<float> biased(experts);
  std::vector<char> available(experts);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* s = scores.data_ptr<float>() + t * experts;
    for (int64_t e = 0; e < experts; ++e) biased[e] = s[e] + b[e];
    std::fill(available.begin(), available.end(), 1);
    keep_top_groups(biased, config, available);
    int64_t* ids = expert_ids.data_ptr<int64_t>() + t * k;
    float* w = weights.data_ptr<float>() + t * k;
    float total = 0.0f;
    for (int64_t j = 0; j < k; ++j) {  // descending biased score, as topk returns them
      ids[j] = best_remaining(biased, available);
      available[ids[j]] = 0;
      w[j] = s[ids[j]];  // the gate weight uses the unbiased affinity
      total += w[j];
    }
    const bool normalise = config.norm_topk_prob && k > 1;
    for (int64_t j = 0; j < k; ++j) {
      w[j] = (normalise ? w[j] / (total + 1e-20f) : w[j]) * static_cast<float>(config.routed_scaling_factor);
    }
  }
  return {scores, expert_ids, weights};
}

double changed_expert_choices(const torch::Tensor& ids_a, const torch::Tensor& ids_b) {
  NEXTN_CHECK(ids_a.dim() == 2 && ids_a.sizes() == ids_b.sizes(), "changed_expert_choices: two [N, K] id tensors ",
              "expected, got ", ids_a.sizes(), " and ", ids_b.sizes());
  if (ids_a.numel() == 0) return 0.0;
  // a[n, i] is among b[n, :] when some column of b equals it.
  auto kept = ids_a.unsqueeze(2).eq(ids_b.unsqueeze(1)).any(2);
  return 1.0 - kept.to(torch::kDouble).mean().item<double>();
}

MoeGateImpl::MoeGateImpl(const ModelConfig& config) : config_(config) {
  weight = register_parameter("weight", torch::empty({config.n_routed_experts, config.hidden_size}));
  e_score_correction_bias =
      register_buffer("e_score_correction_bias", torch::zeros({config.n_routed_experts}, torch::kFloat));
}

Routing MoeGateImpl::forward(const torch::Tensor& x_flat) {
  // Affinities in at least fp32, also under bf16 autocast: selection among close scores must not
  // depend on bf16 rounding. The product is [tokens, experts], a sliver of the layer's work.
  auto dtype = compute_dtype(x_flat.scalar_type());
  torch::Tensor logits;
  {
    FullPrecisionScope fp32_gate;
    logits = linear_no_bias(x_flat.to(dtype), weight.to(dtype));
  }
  if (takes_few_rows_kernels(x_flat, weight, weight.size(1)) && logits.is_contiguous()) {
    kernels::sigmoid_in_place(logits.data_ptr<float>(), logits.numel());  // a fresh tensor: the scores now
    return route_few_tokens(logits, e_score_correction_bias, config_);
  }
  return route_tokens(torch::sigmoid(logits), e_score_correction_bias, config_);
}

}  // namespace nextn
