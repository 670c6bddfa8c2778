// The interface the generator drives: a decoder runs a prompt, then produces tokens step by step.
// Plain decoding yields one token per step, speculative decoding between 1 and N + 1.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "nextn/inference/decode_stats.h"

namespace nextn::inference {

class TokenDecoder {
 public:
  virtual ~TokenDecoder() = default;
  // Takes a prompt (checked: nextn::Error) and forgets any earlier sequence; runs none of it yet.
  virtual void begin(const std::vector<int64_t>& prompt) = 0;
  // Runs the prompt's next chunk (prompt_prefill.h); after its last, the first generated token.
  virtual std::optional<int64_t> run_prefill_chunk() = 0;
  // The prompt's tokens that the next run_prefill_chunk() computes (0 once the prompt has run, or
  // where the prefix cache holds all the rest of it).
  virtual int64_t next_prefill_tokens() const = 0;
  // Runs the whole prompt, chunk after chunk, and returns the first generated token.
  std::vector<int64_t> start(const std::vector<int64_t>& prompt) {
    begin(prompt);
    for (;;) {
      if (std::optional<int64_t> first = run_prefill_chunk()) return {*first};
    }
  }
  // Produces at least 1 and at most max_tokens more tokens (max_tokens >= 1, room() >= 1).
  virtual std::vector<int64_t> step(int64_t max_tokens) = 0;
  // How many more tokens fit in the decoder's capacity (while the prompt runs: after the prompt).
  virtual int64_t room() const = 0;
  // Prompt plus every token handed out so far (while the prompt runs: the prompt).
  virtual const std::vector<int64_t>& tokens() const = 0;
  virtual const DecodeStats& stats() const = 0;
};

}  // namespace nextn::inference
