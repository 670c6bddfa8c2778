// Plain autoregressive decoding with the main model only: a prefill, then one cached forward per
// token. The baseline speculative decoding is compared against, and the reference its greedy
// output must equal.
#pragma once

#include <torch/torch.h>

#include "nextn/inference/batched_forward.h"
#include "nextn/inference/kv_cache.h"
#include "nextn/inference/sampling.h"
#include "nextn/inference/token_decoder.h"
#include "nextn/model/deepseek_v3.h"

namespace nextn::inference {

class PlainDecoder : public TokenDecoder {
 public:
  // capacity: the most tokens (prompt + generated) the sequence may reach; at most
  // max_position_embeddings. Caches are allocated for it once.
  PlainDecoder(DeepSeekV3 model, const SamplingOptions& sampling, int64_t capacity);

  std::vector<int64_t> start(const std::vector<int64_t>& prompt) override;
  std::vector<int64_t> step(int64_t max_tokens) override;
  int64_t room() const override { return capacity_ - static_cast<int64_t>(tokens_.size()); }
  const std::vector<int64_t>& tokens() const override { return tokens_; }
  const DecodeStats& stats() const override { return stats_; }

  const KvCache& cache() const { return cache_; }

  // Continuous batching: the step() of many plain decoders run as one forward
  // (run_main_model_batched). batched_input() is this decoder's share of it, the pending token over
  // its own cache; finish_batched_step() takes its row of the logits and picks the next token, as
  // step() would have. Needs room() >= 1.
  BatchedSequence batched_input();
  int64_t finish_batched_step(const torch::Tensor& logits_row, double step_seconds);
  // The logits [V] the newest token was chosen from (for log-probabilities).
  const torch::Tensor& last_logits() const { return last_logits_; }
  // Asked before start(): start() keeps the prompt's h^0 [1, P, hidden] for scoring the prompt
  // (prompt_scoring.h); take_prompt_hidden() hands it over once.
  void keep_prompt_hidden() { keep_prompt_hidden_ = true; }
  torch::Tensor take_prompt_hidden() { return std::move(prompt_hidden_); }

 private:
  DeepSeekV3 model_;
  Sampler sampler_;
  int64_t capacity_;
  KvCache cache_;                // holds tokens_[0 .. size - 2]; the last token is pending
  std::vector<int64_t> tokens_;
  DecodeStats stats_;
  torch::Tensor last_logits_;
  bool keep_prompt_hidden_ = false;
  torch::Tensor prompt_hidden_;
};

// Checks a prompt against a model and a capacity: not empty, ids inside the vocabulary, and room
// for at least one new token. nextn::Error otherwise.
void check_prompt(const std::vector<int64_t>& prompt, const ModelConfig& config, int64_t capacity);
// Checks a decoder capacity against the model's positions.
void check_capacity(int64_t capacity, const ModelConfig& config);
// An int64 [1, T] tensor of ids on `device`.
torch::Tensor ids_tensor(const std::vector<int64_t>& ids, const torch::Device& device);

}  // namespace nextn::inference
