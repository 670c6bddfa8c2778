#include "nextn/model/rotary_embedding.h"

#include <cmath>

#include "nextn/util/error.h"

namespace nextn {
namespace {

// The dimension index whose wavelength completes `rotations` turns over `max_positions`.
double correction_dim(double rotations, int64_t dim, double base, int64_t max_positions) {
  return dim * std::log(static_cast<double>(max_positions) / (rotations * 2.0 * M_PI)) /
         (2.0 * std::log(base));
}

double yarn_mscale(double factor, double mscale) {
  return factor <= 1.0 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0;
}

}  // namespace

torch::Tensor yarn_inverse_frequencies(const ModelConfig& config) {
  const int64_t dim = config.qk_rope_head_dim;
  const double base = config.rope_theta;
  auto opts = torch::TensorOptions().dtype(torch::kDouble);
  auto inv_freq = 1.0 / torch::pow(base, torch::arange(0, dim, 2, opts) / static_cast<double>(dim));
  if (!config.rope_scaling) return inv_freq;

  const RopeScaling& s = *config.rope_scaling;
  double low = std::floor(correction_dim(s.beta_fast, dim, base, s.original_max_position_embeddings));
  double high = std::ceil(correction_dim(s.beta_slow, dim, base, s.original_max_position_embeddings));
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // avoid a zero-width ramp
  auto ramp = ((torch::arange(dim / 2, opts) - low) / (high - low)).clamp(0.0, 1.0);
  auto keep = 1.0 - ramp;  // 1: extrapolate (keep frequency), 0: interpolate (divide by factor)
  return inv_freq / s.factor * (1.0 - keep) + inv_freq * keep;
}

RotaryEmbeddingImpl::RotaryEmbeddingImpl(const ModelConfig& config) {
  auto inv_freq = yarn_inverse_frequencies(config);
  auto t = torch::arange(config.max_position_embeddings, torch::TensorOptions().dtype(torch::kDouble));
  auto freqs = torch::outer(t, inv_freq);
  double mscale = 1.0;
  if (config.rope_scaling) {
    // HF DeepseekV3YarnRotaryEmbedding scales cos/sin by mscale(mscale) / mscale(mscale_all_dim);
    // with V3's values (both 1.0) this is 1 and the whole correction sits in softmax_scale().
    mscale = yarn_mscale(config.rope_scaling->factor, config.rope_scaling->mscale) /
             yarn_mscale(config.rope_scaling->factor, config.rope_scaling->mscale_all_dim);
  }
  cos_table = register_buffer("cos_table", (freqs.cos() * mscale).to(torch::kFloat));
  sin_table = register_buffer("sin_table", (freqs.sin() * mscale).to(torch::kFloat));
}

RopeAngles RotaryEmbeddingImpl::angles(const torch::Tensor& positions) const {
  NEXTN_CHECK(positions.dim() == 1 || positions.dim() == 2, "rotary positions must be [T] or [B, T]");
  if (positions.numel() > 0) {
    int64_t max_position = positions.max().item<int64_t>();
    NEXTN_CHECK(max_position < max_positions(), "position ", max_position,
                " is beyond max_position_embeddings (", max_positions(), ")");
  }
  auto flat = positions.reshape({-1});
  std::vector<int64_t> shape = positions.dim() == 1 ? std::vector<int64_t>{1, positions.size(0), 1, -1}
                                                    : std::vector<int64_t>{positions.size(0), positions.size(1), 1, -1};
  return {cos_table.index_select(0, flat).view(shape), sin_table.index_select(0, flat).view(shape)};
}

RopeAngles RotaryEmbeddingImpl::angles(int64_t length) const {
  NEXTN_CHECK(length <= max_positions(), "sequence length ", length,
              " exceeds max_position_embeddings (", max_positions(), ")");
  return {cos_table.narrow(0, 0, length).view({1, length, 1, -1}),
          sin_table.narrow(0, 0, length).view({1, length, 1, -1})};
}

torch::Tensor apply_rotary(const torch::Tensor& x, const RopeAngles& angles) {
  auto sizes = x.sizes().vec();
  auto pairs = x.reshape({sizes[0], sizes[1], sizes[2], sizes[3] / 2, 2});
  auto even = pairs.select(-1, 0);
  auto odd = pairs.select(-1, 1);
  auto cos = angles.cos.to(x.scalar_type());
  auto sin = angles.sin.to(x.scalar_type());
  auto rotated = torch::stack({even * cos - odd * sin, even * sin + odd * cos}, -1);
  return rotated.reshape(sizes);
}

}  // namespace nextn
