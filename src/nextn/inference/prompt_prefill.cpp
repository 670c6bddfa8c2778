#include "nextn/inference/prompt_prefill.h"

#include <algorithm>

#include "nextn/inference/plain_decoder.h"
#include "nextn/kernels/few_rows_matmul.h"
#include "nextn/util/error.h"

namespace nextn::inference {

void check_prefill_chunk(int64_t chunk) {
  NEXTN_CHECK(chunk >= 1, "--prefill-chunk must be at least 1 token, got ", chunk);
}

PromptPrefill::PromptPrefill(const std::vector<int64_t>& prompt, int64_t chunk, PrefixCache* prefix_cache)
    : prompt_(prompt), chunk_(chunk), prefix_cache_(prefix_cache) {
  check_prefill_chunk(chunk);
  NEXTN_CHECK(prefix_cache == nullptr || prefix_cache->chunk() == chunk, "a prefix cache of chunks of ",
              prefix_cache->chunk(), " tokens cannot serve a prefill in chunks of ", chunk);
}

int64_t PromptPrefill::next_chunk_tokens() const {
  return std::min<int64_t>(chunk_, static_cast<int64_t>(prompt_.size()) - next_);
}

int64_t PromptPrefill::next_computed_tokens() const {
  if (done() || prefix_cache_ == nullptr) return next_chunk_tokens();
  const auto length = static_cast<int64_t>(prompt_.size());
  int64_t at = next_;
  while (at + chunk_ < length && prefix_cache_->holds(prompt_, at, at + chunk_, false)) at += chunk_;
  if (at + chunk_ >= length && prefix_cache_->holds(prompt_, at, length, true)) return 0;
  return std::min<int64_t>(chunk_, length - at);
}

int64_t PromptPrefill::chunks() const {
  return (static_cast<int64_t>(prompt_.size()) + chunk_ - 1) / chunk_;
}

MainModelStep PromptPrefill::run_next_chunk(DeepSeekV3Impl& model, KvCache& cache) {
  NEXTN_CHECK(!done(), "the prompt's prefill is already done");
  NEXTN_CHECK(cache.length() == next_, "the KV cache holds ", cache.length(), " entries where the prompt's chunk at ",
              next_, " expects as many");
  const auto length = static_cast<int64_t>(prompt_.size());
  // Full chunks that an earlier prompt with the same tokens up to their end left: their bits are
  // what computing them gives.
  std::vector<torch::Tensor> restored;
  while (prefix_cache_ && next_ + chunk_ < length) {
    torch::Tensor hidden = prefix_cache_->restore(prompt_, next_, next_ + chunk_, cache);
    if (!hidden.defined()) break;
    restored.push_back(std::move(hidden));
    next_ += chunk_;
    reused_ += chunk_;
  }
  const int64_t start = next_, tokens = next_chunk_tokens();
  const bool last = start + tokens == length;
  MainModelStep out;
  // The same prompt before (another choice of the request): its last chunk with its logits too.
  if (prefix_cache_ && last) out.hidden = prefix_cache_->restore(prompt_, start, length, cache, &out.logits);
  if (out.hidden.defined()) {
    out.logits = out.logits.clone();  // the caller's to use as it likes (samplers may write to logits)
    out.hidden = out.hidden.clone();  // (the full chunks' are copied by the torch::cat below)
    next_ = length;
    reused_ += tokens;
  } else {
    out = compute_chunk(model, cache, start, tokens, last);
  }
  if (!restored.empty()) {
    restored.push_back(out.hidden);
    out.hidden = torch::cat(restored, 1);
  }
  return out;
}

MainModelStep PromptPrefill::compute_chunk(DeepSeekV3Impl& model, KvCache& cache, int64_t start, int64_t tokens,
                                           bool last) {
  const std::vector<int64_t> ids(prompt_.begin() + start, prompt_.begin() + start + tokens);
  // More rows than decoding's kernels take: the naive form, as a whole prompt's prefill (each
  // chunk expands the cached latents once per head, a small cost beside the chunk's products);
  // fewer: the absorbed form on decoding's kernels, as a verify of as many tokens.
  const AttentionForm form = tokens > kernels::kFewRowsMax ? AttentionForm::kNaive : AttentionForm::kAuto;
  MainModelStep out = run_main_model_cached(model, ids_tensor(ids, model.embed_tokens->weight.device()), cache,
                                            last ? LogitsFor::kLastPosition : LogitsFor::kNone, form);
  next_ += tokens;
  // Every full chunk is kept, for the longer prompts that start with it, and the prompt's last
  // one with its logits, for the same prompt again.
  if (prefix_cache_ && (tokens == chunk_ || last)) {
    prefix_cache_->keep(prompt_, start, next_, cache, out.hidden, last ? out.logits : torch::Tensor());
  }
  return out;
}

}  // namespace nextn::inference
