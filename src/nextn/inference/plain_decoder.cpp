#include "nextn/inference/plain_decoder.h"

#include <chrono>

#include "nextn/inference/cached_forward.h"
#include "nextn/util/error.h"

namespace nextn::inference {
void check_capacity(int64_t capacity, const ModelConfig& config) {
  NEXTN_CHECK(capacity >= 2 && capacity <= config.max_position_embeddings, "decoding capacity ", capacity,
              " must be in [2, max_position_embeddings=", config.max_position_embeddings, "]");
}

void check_prompt(const std::vector<int64_t>& prompt, const ModelConfig& config, int64_t capacity) {
  NEXTN_CHECK(!prompt.empty(), "the prompt is empty: at least one token is needed");
  for (int64_t id : prompt) {
    NEXTN_CHECK(id >= 0 && id < config.vocab_size, "prompt token id ", id, " is outside the vocabulary [0, ",
                config.vocab_size, ")");
  }
  NEXTN_CHECK(static_cast<int64_t>(prompt.size()) < capacity, "the prompt has ", prompt.size(),
              " tokens but the context holds ", capacity, " (prompt and generated tokens together): it leaves no room "
              "to generate");
}

torch::Tensor ids_tensor(const std::vector<int64_t>& ids, const torch::Device& device) {
  return torch::tensor(ids, torch::kLong).view({1, -1}).to(device);
}

PlainDecoder::PlainDecoder(DeepSeekV3 model, const SamplingOptions& sampling, int64_t capacity, int64_t prefill_chunk)
    : model_(std::move(model)), sampler_(sampling), capacity_(capacity), prefill_chunk_(prefill_chunk) {
  check_capacity(capacity, model_->config());
  check_prefill_chunk(prefill_chunk);
  const auto& weight = model_->embed_tokens->weight;
  cache_ = KvCache::for_main_model(model_->config(), 1, capacity,
                                   torch::TensorOptions().dtype(weight.scalar_type()).device(weight.device()));
}

void PlainDecoder::begin(const std::vector<int64_t>& prompt) {
  check_prompt(prompt, model_->config(), capacity_);
  cache_.clear();
  stats_ = DecodeStats();
  stats_.prompt_tokens = static_cast<int64_t>(prompt.size());
  prefill_ = PromptPrefill(prompt, prefill_chunk_, prefix_cache_);
  tokens_ = prompt;  // the first generated token joins them after the last chunk
  started_ = false;
  chunk_hidden_ = torch::Tensor();
}

std::optional<int64_t> PlainDecoder::run_prefill_chunk() {
  torch::NoGradGuard no_grad;
  NEXTN_CHECK(!prefill_.done(), "run_prefill_chunk() without a prompt left to run (begin() first)");
  const auto started = std::chrono::steady_clock::now();
  chunk_hidden_position_ = prefill_.next_position();
  auto out = prefill_.run_next_chunk(*model_, cache_);
  if (keep_prompt_hidden_) chunk_hidden_ = out.hidden;
  stats_.cached_prompt_tokens = prefill_.reused_tokens();
  if (!prefill_.done()) {
    stats_.prefill_seconds += seconds_since(started);
    return std::nullopt;
  }
  last_logits_ = out.logits[0][0];
  const int64_t first = sampler_.next_token(last_logits_);
  tokens_.push_back(first);
  started_ = true;  // only now: a chunk that threw leaves the decoder unable to step
  stats_.generated_tokens = 1;
  stats_.prefill_seconds += seconds_since(started);
  return first;
}

std::vector<int64_t> PlainDecoder::step(int64_t max_tokens) {
  torch::NoGradGuard no_grad;
  NEXTN_CHECK(started_, "step() before the prompt's prefill");
  NEXTN_CHECK(max_tokens >= 1 && room() >= 1, "no room left to decode");
  const auto started = std::chrono::steady_clock::now();
  // The pending token (the last one handed out) goes through the model; its logits give the next.
  auto out = run_main_model_cached(*model_, ids_tensor({tokens_.back()}, model_->embed_tokens->weight.device()),
                                   cache_);
  return {finish_batched_step(out.logits[0][0], seconds_since(started))};
}

BatchedSequence PlainDecoder::batched_input() {
  NEXTN_CHECK(started_, "batched_input() before the prompt's prefill");
  NEXTN_CHECK(room() >= 1, "no room left to decode");
  return {&cache_, {tokens_.back()}};
}

int64_t PlainDecoder::finish_batched_step(const torch::Tensor& logits_row, double step_seconds) {
  last_logits_ = logits_row;
  const int64_t next = sampler_.next_token(logits_row);
  tokens_.push_back(next);
  stats_.generated_tokens += 1;
  stats_.steps += 1;
  stats_.step_tokens += 1;
  stats_.decode_seconds += step_seconds;
  return next;
}

}  // namespace nextn::inference
