// What a decoding run measured: tokens, time, and for speculative decoding how many drafts each
// depth proposed and how many the target accepted.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace nextn::inference {

struct DecodeStats {
  int64_t prompt_tokens = 0;
  int64_t cached_prompt_tokens = 0;  // of them, copied from a prefix cache instead of computed
  int64_t generated_tokens = 0;  // tokens handed out, the first one (from the prefill) included
  double prefill_seconds = 0.0;  // the prompt's forward and the first token
  double decode_seconds = 0.0;   // every step after it
  int64_t steps = 0;             // decoding steps: one main-model forward each

  // Speculative decoding only (empty / zero for plain decoding). Index k - 1 holds depth k.
  int64_t draft_tokens = 0;                // N, drafts per step (fewer near the end of the budget)
  double draft_seconds = 0.0;              // MTP modules, included in decode_seconds
  double verify_seconds = 0.0;             // main model and acceptance, included in decode_seconds
  int64_t step_tokens = 0;                 // tokens produced by steps: accepted drafts + one per step
  std::vector<int64_t> drafted_per_depth;  // drafts proposed at depth k
  std::vector<int64_t> reached_per_depth;  // ... of which the target examined (all earlier accepted)
  std::vector<int64_t> accepted_per_depth; // ... of which it accepted
  std::vector<int64_t> steps_by_draft_count;  // steps that drafted N = 0, 1, ... (--draft auto's choices)

  // Acceptance at depth k given that every earlier draft of the step was accepted (the usual
  // per-depth figure; depth 1 is DeepSeek-V3's "second token acceptance rate").
  double acceptance_rate(int64_t depth) const;
  // Acceptance at depth k over all drafts made there: the chance a depth-k draft ends up in the output.
  double overall_acceptance_rate(int64_t depth) const;
  // Tokens per decoding step: mean accepted drafts + 1 for speculative decoding, 1 for plain.
  double mean_tokens_per_step() const;
  // Generated tokens over prefill + decode time, and decode-only throughput (tokens after the
  // first over decode_seconds).
  double tokens_per_second() const;
  double decode_tokens_per_second() const;

  // A few human-readable lines (for the CLI and benchmarks).
  std::string summary() const;

  // Adds another run's counts and times to these (for figures over many runs); draft_tokens
  // becomes the larger of the two.
  void accumulate(const DecodeStats& other);
};

// Wall-clock seconds since `start` (steady clock). On a GPU the decoders read every step's tokens
// back to the host, which synchronises, so step timings include the device's work.
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace nextn::inference
