// How often the MTP modules' drafts are accepted when they draft for the main model on held-out
// text: the figure speculative decoding's speed depends on (DeepSeek-V3 §5.4.3 reports 85-90% for
// the second token). Teacher-forced per-depth accuracy (evaluator.h) scores a draft against the
// data; this scores it against what the main model itself generates, which is what acceptance is.
#pragma once

#include <cstdint>
#include <vector>

#include "nextn/data/token_dataset.h"
#include "nextn/inference/decode_stats.h"
#include "nextn/inference/sampling.h"
#include "nextn/model/deepseek_v3.h"

namespace nextn {

struct DraftingEvalOptions {
  int64_t prompts = 32;         // held-out prompts, spread evenly over the validation split
  int64_t prompt_tokens = 64;   // tokens per prompt
  int64_t new_tokens = 64;      // tokens generated after each prompt (no stop token)
  int64_t draft_tokens = 0;     // drafts per step; 0: the model's MTP depth D
  inference::SamplingOptions sampling{0.0};  // temperature 0: greedy

  void validate(const ModelConfig& config) const;  // nextn::Error naming the bad option
};

// `count` prompts of `prompt_tokens` consecutive validation tokens each (one shard per prompt).
// Of the S places a prompt can start, prompt i starts at place floor((i + 1/2) S / count): spread
// evenly, the same for every model of a dataset. Errors when the split has fewer than `count`.
std::vector<std::vector<int64_t>> held_out_prompts(const data::TokenDataset& dataset, int64_t count,
                                                    int64_t prompt_tokens);

struct DraftingEvalResult {
  DraftingEvalOptions options;        // with draft_tokens resolved
  inference::DecodeStats totals;      // every prompt's decoding added up (times included)
};

// Generates new_tokens after each held-out prompt with MTP speculative decoding and adds up what
// each depth drafted, reached and accepted. The model must have MTP modules.
DraftingEvalResult evaluate_drafting(DeepSeekV3 model, const data::TokenDataset& dataset,
                                     const DraftingEvalOptions& options);

}  // namespace nextn
