// Rotary position embedding with YaRN context extension, as DeepSeek-V3 applies it to the
// decoupled RoPE parts of queries and keys (q_pe, k_pe). Pairs are INTERLEAVED: dimensions
// (2j, 2j+1) rotate together by angle position * inv_freq[j] (the official code's
// view_as_complex over pairs).
#pragma once

#include <torch/torch.h>

#include "nextn/config/model_config.h"

namespace nextn {

// cos/sin for a given set of positions, broadcastable against [B, T, heads, rope_dim / 2].
struct RopeAngles {
  torch::Tensor cos;
  torch::Tensor sin;
};

class RotaryEmbeddingImpl : public torch::nn::Module {
 public:
  explicit RotaryEmbeddingImpl(const ModelConfig& config);

  // positions: int64 [T] (same for every row) or [B, T].
  RopeAngles angles(const torch::Tensor& positions) const;
  // Angles for positions 0..length-1.
  RopeAngles angles(int64_t length) const;

  int64_t max_positions() const { return cos_table.size(0); }

  torch::Tensor cos_table;  // [max_position_embeddings, rope_dim / 2], YaRN mscale folded in
  torch::Tensor sin_table;
};
TORCH_MODULE(RotaryEmbedding);

// The inverse frequencies of YaRN (Peng et al. 2023; DeepSeek-V3 inference/model.py
// precompute_freqs_cis): high-frequency dimensions keep their frequency, low-frequency ones are
// divided by `factor`, with a linear ramp between the correction dims of beta_fast and beta_slow.
torch::Tensor yarn_inverse_frequencies(const ModelConfig& config);  // double [rope_dim / 2]

// Rotates interleaved pairs of the last dimension of x [B, T, heads, D] by `angles`.
torch::Tensor apply_rotary(const torch::Tensor& x, const RopeAngles& angles);

}  // namespace nextn
