// The interface the generator drives: a decoder runs a prompt, then produces tokens step by step.
// Plain decoding yields one token per step, speculative decoding between 1 and N + 1.
#pragma once

#include <cstdint>
#include <vector>

#include "nextn/inference/decode_stats.h"

namespace nextn::inference {

class TokenDecoder {
 public:
  virtual ~TokenDecoder() = default;
  // Runs the prompt through the model in one forward and returns the first generated token.
  virtual std::vector<int64_t> start(const std::vector<int64_t>& prompt) = 0;
  // Produces at least 1 and at most max_tokens more tokens (max_tokens >= 1, room() >= 1).
  virtual std::vector<int64_t> step(int64_t max_tokens) = 0;
  // How many more tokens fit in the decoder's capacity.
  virtual int64_t room() const = 0;
  // Prompt plus every token handed out so far.
  virtual const std::vector<int64_t>& tokens() const = 0;
  virtual const DecodeStats& stats() const = 0;
};

}  // namespace nextn::inference
