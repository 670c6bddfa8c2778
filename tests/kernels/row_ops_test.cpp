// Decoding's per-row kernels against the formulas written out in double: RMSNorm over widths that
// are and are not multiples of the 16 partial sums, strided and in-place rows; the rotation of
// interleaved pairs; the gates' sigmoid and SwiGLU.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "nextn/kernels/row_ops.h"

namespace nextn::kernels {
namespace {

std::vector<float> random_values(int64_t n, std::mt19937& rng, float scale = 1.0f) {
  std::uniform_real_distribution<float> uniform(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = uniform(rng);
  return v;
}

TEST(RowOps, RmsNormMatchesTheFormulaForStridedRows) {
  std::mt19937 rng(3);
  for (int64_t dim : {1, 7, 16, 37, 256, 1000}) {
    const int64_t rows = 3, in_stride = dim + 5, out_stride = dim + 2;
    auto x = random_values(rows * in_stride, rng, 3.0f);
    auto weight = random_values(dim, rng);
    std::vector<float> out(rows * out_stride, -7.0f);
    const double eps = 1e-6;
    rms_norm_rows(x.data(), rows, dim, in_stride, weight.data(), eps, out.data(), out_stride);
    for (int64_t r = 0; r < rows; ++r) {
      double squares = 0;
      for (int64_t i = 0; i < dim; ++i) squares += static_cast<double>(x[r * in_stride + i]) * x[r * in_stride + i];
      const double inverse_rms = 1.0 / std::sqrt(squares / dim + eps);
      for (int64_t i = 0; i < dim; ++i) {
        const double expected = x[r * in_stride + i] * inverse_rms * weight[i];
        EXPECT_NEAR(out[r * out_stride + i], expected, 2e-6 * (1 + std::abs(expected))) << dim << " " << r << " " << i;
      }
      for (int64_t i = dim; i < out_stride; ++i) EXPECT_EQ(out[r * out_stride + i], -7.0f) << "wrote past the row";
    }
  }
}

TEST(RowOps, RmsNormInPlaceEqualsOutOfPlace) {
  std::mt19937 rng(4);
  auto x = random_values(2 * 64, rng);
  auto weight = random_values(64, rng);
  std::vector<float> out(x.size());
  rms_norm_rows(x.data(), 2, 64, 64, weight.data(), 1e-5, out.data(), 64);
  rms_norm_rows(x.data(), 2, 64, 64, weight.data(), 1e-5, x.data(), 64);
  EXPECT_EQ(x, out);
}

TEST(RowOps, RotatePairsTurnsEachPairByItsAngle) {
  std::mt19937 rng(5);
  const int64_t dim = 10;
  auto x = random_values(dim, rng);
  std::vector<float> cos(dim / 2), sin(dim / 2);
  for (int64_t i = 0; i < dim / 2; ++i) {
    const double angle = 0.7 * (i + 1) - 1.3;
    cos[i] = static_cast<float>(std::cos(angle));
    sin[i] = static_cast<float>(std::sin(angle));
  }
  auto rotated = x;
  rotate_pairs(rotated.data(), dim, cos.data(), sin.data());
  for (int64_t i = 0; i < dim / 2; ++i) {
    const double angle = 0.7 * (i + 1) - 1.3, e = x[2 * i], o = x[2 * i + 1];
    EXPECT_NEAR(rotated[2 * i], e * std::cos(angle) - o * std::sin(angle), 1e-6);
    EXPECT_NEAR(rotated[2 * i + 1], e * std::sin(angle) + o * std::cos(angle), 1e-6);
    // A rotation keeps each pair's length.
    EXPECT_NEAR(std::hypot(rotated[2 * i], rotated[2 * i + 1]), std::hypot(e, o), 1e-6);
  }
}

TEST(RowOps, SigmoidAndSwigluMatchTheFormulaAndDoNotDependOnTheLength) {
  std::mt19937 rng(6);
  const int64_t n = 37;  // not a multiple of any vector width
  auto x = random_values(n, rng, 8.0f), up = random_values(n, rng, 2.0f);
  auto sig = x;
  sigmoid_in_place(sig.data(), n);
  std::vector<float> act(n);
  swiglu(x.data(), up.data(), n, act.data());
  for (int64_t i = 0; i < n; ++i) {
    const double s = 1.0 / (1.0 + std::exp(-static_cast<double>(x[i])));
    EXPECT_NEAR(sig[i], s, 1e-6 * s) << i;
    EXPECT_NEAR(act[i], x[i] * s * up[i], 2e-6 * std::abs(x[i] * s * up[i]) + 1e-7) << i;
  }
  // Each element alone, at the start of a call and at its end, is bit for bit the same value.
  for (int64_t i = 0; i < n; ++i) {
    float alone = x[i], act_alone;
    sigmoid_in_place(&alone, 1);
    swiglu(&x[i], &up[i], 1, &act_alone);
    EXPECT_EQ(alone, sig[i]) << i;
    EXPECT_EQ(act_alone, act[i]) << i;
  }
}

}  // namespace
}  // namespace nextn::kernels
