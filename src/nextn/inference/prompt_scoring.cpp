#include "nextn/inference/prompt_scoring.h"

#include <algorithm>

#include "nextn/util/error.h"

namespace nextn::inference {

std::vector<ScoredToken> score_rows(const torch::Tensor& logits, const std::vector<int64_t>& tokens, int64_t top_k) {
  torch::NoGradGuard no_grad;
  NEXTN_CHECK(logits.dim() == 2 && logits.size(0) == static_cast<int64_t>(tokens.size()), "logits [",
              tokens.size(), ", V] expected, got ", logits.sizes());
  NEXTN_CHECK(top_k >= 0, "top_k must be non-negative, got ", top_k);
  for (int64_t token : tokens) {
    NEXTN_CHECK(token >= 0 && token < logits.size(1), "token ", token, " outside logits of shape ", logits.sizes());
  }
  // On the logits' device, in double; only the chosen values travel to the host. The token's own
  // value and the top ones are read from the one tensor, so a token that is its row's most likely
  // has exactly the top value (evaluation harnesses test greediness by that equality).
  const torch::Tensor logprobs = torch::log_softmax(logits.to(torch::kDouble), -1);
  const torch::Tensor ids = torch::tensor(tokens, torch::kLong).to(logits.device()).unsqueeze(1);
  const torch::Tensor chosen = logprobs.gather(1, ids).squeeze(1).to(torch::kCPU).contiguous();
  torch::Tensor top_values, top_ids;
  if (top_k > 0) {
    auto [values, indices] = logprobs.topk(std::min<int64_t>(top_k, logprobs.size(1)), -1);
    top_values = values.to(torch::kCPU).contiguous();
    top_ids = indices.to(torch::kCPU).contiguous();
  }
  std::vector<ScoredToken> scored(tokens.size());
  for (size_t r = 0; r < tokens.size(); ++r) {
    scored[r].token = tokens[r];
    scored[r].logprob = chosen.data_ptr<double>()[r];
    if (top_k == 0) continue;
    const int64_t k = top_values.size(1);
    for (int64_t j = 0; j < k; ++j) {
      scored[r].top.emplace_back(top_ids.data_ptr<int64_t>()[static_cast<int64_t>(r) * k + j],
                                 top_values.data_ptr<double>()[static_cast<int64_t>(r) * k + j]);
    }
  }
  return scored;
}

ScoredToken score_token(const torch::Tensor& logits, int64_t token, int64_t top_k) {
  NEXTN_CHECK(logits.dim() == 1, "score_token takes logits [V], got ", logits.sizes());
  return score_rows(logits.unsqueeze(0), {token}, top_k).front();
}

std::vector<ScoredToken> score_prompt(DeepSeekV3Impl& model, const torch::Tensor& hidden,
                                      const std::vector<int64_t>& prompt, int64_t top_k, int64_t rows_per_chunk) {
  const auto length = static_cast<int64_t>(prompt.size());
  NEXTN_CHECK(hidden.dim() == 3 && hidden.size(0) == 1 && hidden.size(1) == length, "hidden states [1, ", length,
              ", hidden] expected for a prompt of ", length, " tokens, got ", hidden.sizes());
  return score_prompt_span(model, hidden, prompt, 0, top_k, rows_per_chunk);
}

std::vector<ScoredToken> score_prompt_span(DeepSeekV3Impl& model, const torch::Tensor& hidden,
                                           const std::vector<int64_t>& prompt, int64_t first, int64_t top_k,
                                           int64_t rows_per_chunk) {
  torch::NoGradGuard no_grad;
  const auto length = static_cast<int64_t>(prompt.size());
  NEXTN_CHECK(hidden.dim() == 3 && hidden.size(0) == 1 && hidden.size(1) >= 1, "hidden states [1, S, hidden] "
              "expected, got ", hidden.sizes());
  const int64_t span = hidden.size(1);
  NEXTN_CHECK(first >= 0 && first + span <= length, "positions [", first, ", ", first + span,
              ") are outside the prompt of ", length, " tokens");
  NEXTN_CHECK(rows_per_chunk >= 1, "rows_per_chunk must be positive, got ", rows_per_chunk);
  // Position i's logits predict token i + 1: the span's positions score tokens first + 1 .. up to
  // the prompt's last (the prompt's last position predicts the first generated token: not scored).
  const int64_t scored_rows = std::min(span, length - 1 - first);
  std::vector<ScoredToken> scored;
  if (scored_rows <= 0) return scored;
  scored.reserve(static_cast<size_t>(scored_rows));
  for (int64_t row = 0; row < scored_rows; row += rows_per_chunk) {
    const int64_t rows = std::min(rows_per_chunk, scored_rows - row);
    const torch::Tensor logits = model.output_head(hidden.narrow(1, row, rows), model.norm)[0];
    const std::vector<int64_t> targets(prompt.begin() + first + row + 1, prompt.begin() + first + row + rows + 1);
    for (ScoredToken& s : score_rows(logits, targets, top_k)) scored.push_back(std::move(s));
  }
  return scored;
}

}  // namespace nextn::inference
