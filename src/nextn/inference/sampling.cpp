#include "nextn/inference/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "nextn/util/error.h"

namespace nextn::inference {

namespace {

// What sampling_distribution() reads, checked on every sampled step: validate()'s cheap part.
void check_distribution_options(const SamplingOptions& o) {
  NEXTN_CHECK(std::isfinite(o.temperature) && o.temperature >= 0.0, "temperature must be >= 0 (0: greedy), got ",
              o.temperature);
  NEXTN_CHECK(o.top_k >= 0, "top_k must be >= 0 (0: off), got ", o.top_k);
  NEXTN_CHECK(o.top_p > 0.0 && o.top_p <= 1.0, "top_p must be in (0, 1] (1: off), got ", o.top_p);
}

}  // namespace

void SamplingOptions::validate() const {
  check_distribution_options(*this);
  NEXTN_CHECK(presence_penalty >= -2.0 && presence_penalty <= 2.0, "presence_penalty must be in [-2, 2], got ",
              presence_penalty);
  NEXTN_CHECK(frequency_penalty >= -2.0 && frequency_penalty <= 2.0, "frequency_penalty must be in [-2, 2], got ",
              frequency_penalty);
  std::set<int64_t> biased;
  for (const auto& [token, bias] : logit_bias) {
    NEXTN_CHECK(token >= 0, "logit_bias: token id ", token, " is negative");
    NEXTN_CHECK(bias >= -100.0 && bias <= 100.0, "logit_bias of token ", token, " must be in [-100, 100], got ", bias);
    NEXTN_CHECK(biased.insert(token).second, "logit_bias: token ", token, " appears twice");
  }
}

torch::Tensor sampling_distribution(const torch::Tensor& logits, const SamplingOptions& options) {
  check_distribution_options(options);
  torch::NoGradGuard no_grad;
  const auto dtype = logits.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  auto x = logits.to(dtype);
  const int64_t vocab = x.size(-1);
  if (options.greedy()) {
    auto best = x.argmax(-1, /*keepdim=*/true);
    return torch::zeros_like(x).scatter_(-1, best, 1.0);
  }
  // Shifted by the maximum before the division: softmax is the same, and a temperature so small
  // that x / T overflows (about 1e-38 for float logits) gives argmax's one-hot, not inf - inf = NaN.
  // (A temperature below the smallest float would become 0 in a float division: 0 / 0 = NaN.)
  const double divisor = dtype == torch::kFloat ? std::max<double>(options.temperature, std::numeric_limits<float>::denorm_min())
                                                : options.temperature;
  x = (x - std::get<0>(x.max(-1, /*keepdim=*/true))) / divisor;
  const double minus_inf = -std::numeric_limits<double>::infinity();
  if (options.top_k > 0 && options.top_k < vocab) {
    // Everything below the k-th largest logit goes; ties with it stay.
    auto kth = std::get<0>(x.topk(options.top_k, -1)).narrow(-1, options.top_k - 1, 1);
    x = x.masked_fill(x < kth, minus_inf);
  }
  auto probs = torch::softmax(x, -1);
  if (options.top_p < 1.0) {
    // Sorted by probability, a token stays while the mass before it is still below top_p: the
    // smallest prefix reaching top_p, and never empty (the first token has nothing before it).
    auto sorted = probs.sort(-1, /*descending=*/true);
    auto sorted_probs = std::get<0>(sorted);
    auto mass_before = sorted_probs.cumsum(-1) - sorted_probs;
    auto drop_sorted = mass_before >= options.top_p;
    auto drop = torch::zeros_like(drop_sorted).scatter(-1, std::get<1>(sorted), drop_sorted);
    probs = probs.masked_fill(drop, 0.0);
    probs = probs / probs.sum(-1, /*keepdim=*/true);
  }
  return probs;
}

namespace {

int64_t first_largest(const float* values, int64_t count) {
  // One pass for the maximum, in 16 partial maxima that the compiler keeps in vector registers,
  // noting NaNs on the way (a NaN compares false, so it never becomes a partial maximum); then the
  // first index holding the answer.
  constexpr int64_t kPartials = 16;
  float partial[kPartials];
  int32_t saw_nan[kPartials] = {};
  std::fill(partial, partial + kPartials, -std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + kPartials <= count; i += kPartials) {
    for (int64_t l = 0; l < kPartials; ++l) {
      const float v = values[i + l];
      saw_nan[l] |= static_cast<int32_t>(v != v);
      partial[l] = partial[l] < v ? v : partial[l];
    }
  }
  float largest = *std::max_element(partial, partial + kPartials);
  bool any_nan = std::any_of(saw_nan, saw_nan + kPartials, [](int32_t u) { return u != 0; });
  for (; i < count; ++i) {
    any_nan = any_nan || std::isnan(values[i]);
    largest = std::max(largest, values[i]);
  }
  int64_t index = 0;
  if (any_nan) {
    while (!std::isnan(values[index])) ++index;
    return index;
  }
  while (values[index] != largest) ++index;
  return index;
}

}  // namespace

std::vector<int64_t> greedy_tokens(const torch::Tensor& logits) {
  NEXTN_CHECK((logits.dim() == 1 || logits.dim() == 2) && logits.size(-1) > 0, "greedy_tokens takes logits [V] or [R, V], got ",
              logits.sizes());
  const int64_t rows = logits.dim() == 1 ? 1 : logits.size(0);
  std::vector<int64_t> tokens(rows);
  if (logits.device().is_cpu() && logits.scalar_type() == torch::kFloat && logits.stride(-1) == 1) {
    const int64_t row_stride = logits.dim() == 1 ? 0 : logits.stride(0);
    for (int64_t r = 0; r < rows; ++r) tokens[r] = first_largest(logits.data_ptr<float>() + r * row_stride, logits.size(-1));
    return tokens;
  }
  auto best = logits.argmax(-1).reshape({-1}).to(torch::kCPU).contiguous();
  std::copy(best.data_ptr<int64_t>(), best.data_ptr<int64_t>() + best.numel(), tokens.begin());
  return tokens;
}

Sampler::Sampler(const SamplingOptions& options) : options_(options), engine_(options.seed) {
  options_.validate();
  // The bias is the same at every step: its index and values once (a step adds them to a copy).
  if (!options_.logit_bias.empty()) {
    std::vector<int64_t> ids;
    std::vector<double> values;
    for (const auto& [token, bias] : options_.logit_bias) {
      ids.push_back(token);
      values.push_back(bias);
      largest_biased_token_ = std::max(largest_biased_token_, token);
    }
    bias_ids_ = torch::tensor(ids, torch::kLong);
    bias_values_ = torch::tensor(values, torch::kDouble);
  }
}

double Sampler::uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

torch::Tensor Sampler::sample(const torch::Tensor& probabilities) {
  torch::NoGradGuard no_grad;
  const bool single = probabilities.dim() == 1;
  auto rows = single ? probabilities.unsqueeze(0) : probabilities;
  NEXTN_CHECK(rows.dim() == 2, "sample() takes probabilities [V] or [B, V], got ", probabilities.sizes());
  // Inverse CDF on the device: the token is the first index whose cumulative mass exceeds u x total,
  // i.e. the number of indices whose cumulative mass does not. Zero-probability tokens never win:
  // their cumulative mass equals their predecessor's.
  auto cdf = rows.to(torch::kDouble).cumsum(-1);
  std::vector<double> u(rows.size(0));
  for (double& value : u) value = uniform();
  auto targets = torch::tensor(u, torch::kDouble).to(cdf.device()).unsqueeze(1) * cdf.narrow(1, cdf.size(1) - 1, 1);
  auto tokens = (cdf <= targets).sum(-1).clamp_max(rows.size(1) - 1);
  return single ? tokens.squeeze(0) : tokens;
}

int64_t Sampler::next_token(const torch::Tensor& logits) {
  NEXTN_CHECK(logits.dim() == 1, "next_token() takes logits [V], got ", logits.sizes());
  if (!options_.adjusts_logits()) {
    if (options_.greedy()) return greedy_tokens(logits)[0];
    return sample(distribution(logits)).item<int64_t>();
  }
  const torch::Tensor adjusted = adjusted_logits(logits);
  const int64_t token = options_.greedy() ? greedy_tokens(adjusted)[0] : sample(distribution(adjusted)).item<int64_t>();
  if (options_.presence_penalty != 0.0 || options_.frequency_penalty != 0.0) ++drawn_[token];  // a bias needs no counts
  return token;
}

torch::Tensor Sampler::adjusted_logits(const torch::Tensor& logits) const {
  torch::NoGradGuard no_grad;
  NEXTN_CHECK(logits.dim() == 1, "adjusted_logits() takes logits [V], got ", logits.sizes());
  NEXTN_CHECK(largest_biased_token_ < logits.size(0), "logit_bias: token id ", largest_biased_token_,
              " is outside the vocabulary [0, ", logits.size(0), ")");
  torch::Tensor adjusted = logits.clone();
  // index_add_ sums a token's two adjustments (drawn before, and biased).
  if (bias_ids_.defined()) {
    adjusted.index_add_(0, bias_ids_.to(logits.device()), bias_values_.to(logits.device(), logits.scalar_type()));
  }
  if (drawn_.empty()) return adjusted;
  std::vector<int64_t> tokens;
  std::vector<double> penalties;
  // OpenAI's formula: logit[j] - count[j] x frequency_penalty - (count[j] > 0) x presence_penalty.
  for (const auto& [token, count] : drawn_) {
    tokens.push_back(token);
    penalties.push_back(-(static_cast<double>(count) * options_.frequency_penalty + options_.presence_penalty));
  }
  adjusted.index_add_(0, torch::tensor(tokens, torch::kLong).to(logits.device()),
                      torch::tensor(penalties, torch::kDouble).to(logits.device(), logits.scalar_type()));
  return adjusted;
}

}  // namespace nextn::inference
