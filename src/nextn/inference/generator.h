// Text generation over token ids: the entry point the CLI (`nextn generate`), the demo and the
// decode benchmark call. It picks plain or speculative decoding, enforces the context and the stop
// conditions, and streams tokens to a callback; tokenizing and stop strings belong to the caller.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "nextn/inference/decode_stats.h"
#include "nextn/inference/draft_head.h"
#include "nextn/inference/prompt_prefill.h"
#include "nextn/inference/sampling.h"
#include "nextn/inference/draft_policy.h"
#include "nextn/model/deepseek_v3.h"

#include <map>
#include <memory>

namespace nextn::inference {

struct GenerationOptions {
  int64_t max_new_tokens = 128;
  std::vector<int64_t> stop_token_ids;  // generation ends after one of these (it is part of the output)
  SamplingOptions sampling;             // temperature 0: greedy
  int64_t draft_tokens = 0;             // 0: plain decoding; N >= 1: MTP speculative decoding, N drafts per step
  bool reuse_last_mtp_module = false;   // allow N > D by running the last module again for deeper drafts
  bool adaptive_draft = false;          // --draft auto: each step drafts 0..draft_tokens (draft_policy.h)
  std::vector<int64_t> draft_tree;      // --draft-tree: children per node at each level (draft_tree.h);
                                        // draft_tokens must then be its level count
  DraftHeadOptions draft_head;          // the drafter's tokens and head dtype (draft_head.h)
  int64_t context_length = 0;           // prompt + generated tokens at most; 0: max_position_embeddings
  // A prompt that does not fit (prompt + max_new_tokens > context) is an error unless this is set;
  // then its OLDEST tokens are dropped so that prompt + max_new_tokens fits, at least one kept.
  bool truncate_long_prompt = false;
  // The prompt runs through the model this many tokens per forward (prompt_prefill.h); a server
  // with the same value gives the same tokens.
  int64_t prefill_chunk = kDefaultPrefillChunk;

  void validate(const ModelConfig& config) const;  // nextn::Error naming the bad option
};

enum class StopReason {
  kMaxNewTokens,  // max_new_tokens generated
  kStopToken,     // a stop token was generated
  kCallback,      // the token callback asked to stop (e.g. a stop string matched)
  kContextFull,   // the context is full
};
std::string to_string(StopReason reason);

struct GenerationResult {
  std::vector<int64_t> tokens;  // the generated tokens (not the prompt)
  StopReason stop_reason = StopReason::kMaxNewTokens;
  int64_t prompt_tokens_dropped = 0;  // by truncate_long_prompt
  DecodeStats stats;
};

// Called once per generated token, in order, as soon as it is final (speculative decoding hands
// out several per step). Returning false stops generation after this token; the CLI decodes text
// here and matches stop strings.
using TokenCallback = std::function<bool(int64_t token)>;

class Generator {
 public:
  explicit Generator(DeepSeekV3 model);

  GenerationResult generate(const std::vector<int64_t>& prompt, const GenerationOptions& options,
                            const TokenCallback& on_token = nullptr);

  // The context a run with these options may use: context_length, or max_position_embeddings.
  int64_t context_length(const GenerationOptions& options) const;

 private:
  DeepSeekV3 model_;
  // --draft auto's measured step times, kept across this generator's requests (by max drafts).
  std::map<int64_t, std::shared_ptr<DraftStepCosts>> draft_step_costs_;
};

}  // namespace nextn::inference
