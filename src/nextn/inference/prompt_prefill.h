// A prompt runs through the main model in chunks of at most `chunk` tokens, at bounds fixed by
// the prompt alone: [0, c), [c, 2c), ... A server interleaves a long prompt's chunks with the
// decoding steps of the requests already running (vLLM's and SGLang's chunked prefill), so that
// a 1000-token prompt holds them up for one chunk at a time, not for its whole prefill; `nextn
// generate` runs the same chunks one after the other, so both compute the same bits and greedy
// outputs agree token for token whatever else the server runs.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "nextn/inference/cached_forward.h"
#include "nextn/inference/kv_cache.h"
#include "nextn/inference/prefix_cache.h"
#include "nextn/model/deepseek_v3.h"

namespace nextn::inference {

// Prompt tokens per forward unless --prefill-chunk says otherwise (docs/BENCHMARKS.md "Long
// prompts": the prefill's speed is flat from here up, a step's wait for one chunk still short).
constexpr int64_t kDefaultPrefillChunk = 256;

// nextn::Error unless chunk >= 1, naming the option.
void check_prefill_chunk(int64_t chunk);

class PromptPrefill {
 public:
  PromptPrefill() = default;
  // The prompt is copied; chunk >= 1. With a prefix cache (kept by the caller, outliving this), the
  // prompt's full chunks are kept there, and those an earlier prompt left are copied in.
  PromptPrefill(const std::vector<int64_t>& prompt, int64_t chunk, PrefixCache* prefix_cache = nullptr);

  bool done() const { return next_ == static_cast<int64_t>(prompt_.size()); }
  int64_t next_position() const { return next_; }          // the first position of the next chunk
  int64_t next_chunk_tokens() const;                         // 0 once done
  // The prompt tokens the next run_next_chunk() computes: its chunk's, or 0 where the prefix cache
  // holds the rest of the prompt (a server's prefill budget counts these).
  int64_t next_computed_tokens() const;
  int64_t chunks() const;                                    // in all
  int64_t reused_tokens() const { return reused_; }          // copied from the prefix cache so far

  // Runs the next chunk through the main model, appending its entries to `cache` (which holds the
  // chunks before it): its hidden states h^0 [1, chunk, hidden], and, for the prompt's last chunk,
  // the logits [1, 1, V] at the last position (undefined before). With a prefix cache, the kept
  // chunks from here on come first (copied), then one computed chunk, or the prompt's last chunk
  // copied with its logits when the same prompt ran before: the hidden states span them all, from
  // the next_position() of the call.
  MainModelStep run_next_chunk(DeepSeekV3Impl& model, KvCache& cache);

 private:
  // The chunk of `tokens` prompt tokens from `start` through the model (kept in the prefix cache).
  MainModelStep compute_chunk(DeepSeekV3Impl& model, KvCache& cache, int64_t start, int64_t tokens, bool last);

  std::vector<int64_t> prompt_;
  int64_t chunk_ = 1;
  int64_t next_ = 0;
  PrefixCache* prefix_cache_ = nullptr;
  int64_t reused_ = 0;
};

}  // namespace nextn::inference
