// Plain autoregressive decoding with the main model only: a prefill, then one cached forward per
// token. The baseline speculative decoding is compared against, and the reference its greedy
// output must equal.
#pragma once

#include <torch/torch.h>

#include "nextn/inference/batched_forward.h"
#include "nextn/inference/kv_cache.h"
#include "nextn/inference/prompt_prefill.h"
#include "nextn/inference/sampling.h"
#include "nextn/inference/token_decoder.h"
#include "nextn/model/deepseek_v3.h"

namespace nextn::inference {

class PlainDecoder : public TokenDecoder {
 public:
  // capacity: the most tokens (prompt + generated) the sequence may reach; at most
  // max_position_embeddings. Caches are allocated for it once. The prompt runs in chunks of
  // prefill_chunk tokens (prompt_prefill.h).
  PlainDecoder(DeepSeekV3 model, const SamplingOptions& sampling, int64_t capacity,
               int64_t prefill_chunk = kDefaultPrefillChunk);

  void begin(const std::vector<int64_t>& prompt) override;
  std::optional<int64_t> run_prefill_chunk() override;
  int64_t next_prefill_tokens() const override { return prefill_.next_computed_tokens(); }
  // Asked before begin(): the prompt's full chunks are kept in and reused from `cache` (not owned;
  // it must outlive the prefill). Null: none.
  void use_prefix_cache(PrefixCache* cache) { prefix_cache_ = cache; }
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
  // Asked before the prefill: each run_prefill_chunk() keeps its chunk's h^0 [1, chunk, hidden], from
  // prompt position chunk_hidden_position(), for scoring the prompt as it runs (prompt_scoring.h);
  // take_chunk_hidden() hands it over once.
  void keep_prompt_hidden() { keep_prompt_hidden_ = true; }
  torch::Tensor take_chunk_hidden() { return std::move(chunk_hidden_); }
  int64_t chunk_hidden_position() const { return chunk_hidden_position_; }

 private:
  DeepSeekV3 model_;
  Sampler sampler_;
  int64_t capacity_;
  int64_t prefill_chunk_;
  PromptPrefill prefill_;        // the prompt's chunks still to run
  PrefixCache* prefix_cache_ = nullptr;
  bool started_ = false;  // the prompt has run and its first token is out: steps may follow
  KvCache cache_;                // holds tokens_[0 .. size - 2]; the last token is pending
  std::vector<int64_t> tokens_;
  DecodeStats stats_;
  torch::Tensor last_logits_;
  bool keep_prompt_hidden_ = false;
  torch::Tensor chunk_hidden_;
  int64_t chunk_hidden_position_ = 0;
};

// Checks a prompt against a model and a capacity: not empty, ids inside the vocabulary, and room
// for at least one new token. nextn::Error otherwise.
void check_prompt(const std::vector<int64_t>& prompt, const ModelConfig& config, int64_t capacity);
// Checks a decoder capacity against the model's positions.
void check_capacity(int64_t capacity, const ModelConfig& config);
// An int64 [1, T] tensor of ids on `device`.
torch::Tensor ids_tensor(const std::vector<int64_t>& ids, const torch::Device& device);

}  // namespace nextn::inference
