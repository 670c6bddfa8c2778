#include "nextn/inference/prompt_scoring.h"

#include <algorithm>

#include "nextn/util/error.h"

namespace nextn::inference {

ScoredToken score_token(const torch::Tensor& logits, int64_t token, int64_t top_k) {
  NEXTN_CHECK(logits.dim() == 1 && token >= 0 && token < logits.size(0), "token ", token,
              " outside logits of shape ", logits.sizes());
  NEXTN_CHECK(top_k >= 0, "top_k must be non-negative, got ", top_k);
  const torch::Tensor logprobs = torch::log_softmax(logits.to(torch::kCPU, torch::kDouble), -1);
  ScoredToken scored;
  scored.token = token;
  scored.logprob = logprobs[token].item<double>();
  if (top_k > 0) {
    auto [values, ids] = logprobs.topk(std::min<int64_t>(top_k, logprobs.size(0)));
    const auto* v = values.data_ptr<double>();
    const auto* i = ids.data_ptr<int64_t>();
    for (int64_t k = 0; k < values.size(0); ++k) scored.top.emplace_back(i[k], v[k]);
  }
  return scored;
}

std::vector<ScoredToken> score_prompt(DeepSeekV3Impl& model, const torch::Tensor& hidden,
                                      const std::vector<int64_t>& prompt, int64_t top_k, int64_t rows_per_chunk) {
  torch::NoGradGuard no_grad;
  const auto length = static_cast<int64_t>(prompt.size());
  NEXTN_CHECK(hidden.dim() == 3 && hidden.size(0) == 1 && hidden.size(1) == length, "hidden states [1, ", length,
              ", hidden] expected for a prompt of ", length, " tokens, got ", hidden.sizes());
  NEXTN_CHECK(rows_per_chunk >= 1, "rows_per_chunk must be positive, got ", rows_per_chunk);
  std::vector<ScoredToken> scored;
  if (length < 2) return scored;
  scored.reserve(static_cast<size_t>(length - 1));
  // Position i's logits predict token i + 1: positions 0 .. P-2 score tokens 1 .. P-1.
  for (int64_t first = 0; first < length - 1; first += rows_per_chunk) {
    const int64_t rows = std::min(rows_per_chunk, length - 1 - first);
    const torch::Tensor logits = model.output_head(hidden.narrow(1, first, rows), model.norm)[0];
    for (int64_t r = 0; r < rows; ++r) {
      scored.push_back(score_token(logits[r], prompt[static_cast<size_t>(first + r + 1)], top_k));
    }
  }
  return scored;
}

}  // namespace nextn::inference
