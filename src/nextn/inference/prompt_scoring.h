// How likely the model finds each token of a text: the log-probabilities that evaluation
// harnesses score multiple-choice answers and perplexity with (lm-evaluation-harness's
// loglikelihood requests: an OpenAI completion with echo and logprobs), and the log-probabilities
// of generated tokens, both from the raw logits (before temperature and truncation).
#pragma once

#include <torch/torch.h>

#include <utility>
#include <vector>

#include "nextn/model/deepseek_v3.h"

namespace nextn::inference {

struct ScoredToken {
  int64_t token = 0;
  double logprob = 0;                          // log p(token | the tokens before it)
  std::vector<std::pair<int64_t, double>> top;  // the top_k most likely tokens there, most likely first
};

// For each row r of `logits` [R, V]: the log-softmax in double at tokens[r], and the `top_k` (>= 0)
// most likely tokens, computed on the logits' device (one copy of the results to the host).
std::vector<ScoredToken> score_rows(const torch::Tensor& logits, const std::vector<int64_t>& tokens, int64_t top_k);
// The same for one row of logits [V].
ScoredToken score_token(const torch::Tensor& logits, int64_t token, int64_t top_k);

// For each position i in [1, P) of `prompt`: how likely the model found prompt[i] after
// prompt[0 .. i-1], from `hidden` [1, P, hidden], the main model's h^0 of the prompt
// (run_main_model_cached's MainModelStep::hidden). The final norm and the head run
// `rows_per_chunk` positions at a time: a long prompt's [P, vocab] logits would be gigabytes.
std::vector<ScoredToken> score_prompt(DeepSeekV3Impl& model, const torch::Tensor& hidden,
                                      const std::vector<int64_t>& prompt, int64_t top_k,
                                      int64_t rows_per_chunk = 64);
// The same for the prompt's positions [first, first + S) alone, from their h^0 `hidden` [1, S,
// hidden] (a chunk of its prefill, prompt_prefill.h): the scores of tokens first + 1 .. first + S,
// those inside the prompt. A prompt's chunks scored in turn give score_prompt's list.
std::vector<ScoredToken> score_prompt_span(DeepSeekV3Impl& model, const torch::Tensor& hidden,
                                           const std::vector<int64_t>& prompt, int64_t first, int64_t top_k,
                                           int64_t rows_per_chunk = 64);

}  // namespace nextn::inference
