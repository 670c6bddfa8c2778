// oneDNN's sgemm as nextn calls it (row-major, either operand transposed, leading dimensions wider
// than the rows, C overwritten or accumulated) against a naive loop in double.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "nextn/kernels/onednn_sgemm.h"

namespace nextn::kernels {
namespace {

struct PaddedMatrix {
  std::vector<float> data;
  int64_t ld = 0;
};

// A [rows, cols] row-major matrix with `pad` unused columns after each row, random values.
PaddedMatrix padded_random_matrix(int64_t rows, int64_t cols, int64_t pad, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  PaddedMatrix s;
  s.ld = cols + pad;
  s.data.resize(static_cast<size_t>(std::max<int64_t>(rows, 1) * s.ld));
  for (auto& v : s.data) v = normal(rng);
  return s;
}

TEST(OneDnnSgemm, MatchesANaiveLoopForEveryTranspositionAndBeta) {
  if (!onednn_sgemm_built()) GTEST_SKIP() << "built without oneDNN";
  std::mt19937 rng(11);
  struct Shape {
    int64_t m, n, k;
  };
  for (Shape s : {Shape{1, 1, 1}, Shape{7, 13, 5}, Shape{64, 33, 129}, Shape{130, 256, 48}}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        for (float beta : {0.0f, 1.0f}) {
          // PaddedMatrix shapes: A [m, k] or [k, m], B [k, n] or [n, k]; C [m, n]; 3 padding columns each.
          PaddedMatrix a = ta ? padded_random_matrix(s.k, s.m, 3, rng) : padded_random_matrix(s.m, s.k, 3, rng);
          PaddedMatrix b = tb ? padded_random_matrix(s.n, s.k, 3, rng) : padded_random_matrix(s.k, s.n, 3, rng);
          PaddedMatrix c = padded_random_matrix(s.m, s.n, 3, rng);
          const std::vector<float> c_before = c.data;
          onednn_sgemm(ta, tb, s.m, s.n, s.k, a.data.data(), a.ld, b.data.data(), b.ld, beta, c.data.data(), c.ld);
          double worst = 0;
          for (int64_t i = 0; i < s.m; ++i) {
            for (int64_t j = 0; j < s.n; ++j) {
              double sum = beta * c_before[i * c.ld + j];
              for (int64_t p = 0; p < s.k; ++p) {
                const double av = ta ? a.data[p * a.ld + i] : a.data[i * a.ld + p];
                const double bv = tb ? b.data[j * b.ld + p] : b.data[p * b.ld + j];
                sum += av * bv;
              }
              worst = std::max(worst, std::abs(sum - c.data[i * c.ld + j]) / (1.0 + std::abs(sum)));
            }
            for (int64_t j = s.n; j < c.ld; ++j) {  // the padding is never written
              ASSERT_EQ(c.data[i * c.ld + j], c_before[i * c.ld + j]);
            }
          }
          EXPECT_LT(worst, 2e-5) << s.m << "x" << s.k << " by " << s.k << "x" << s.n << " ta " << ta << " tb " << tb
                                 << " beta " << beta;
        }
      }
    }
  }
}

TEST(OneDnnSgemm, TheSameCallGivesTheSameBits) {
  if (!onednn_sgemm_built()) GTEST_SKIP() << "built without oneDNN";
  std::mt19937 rng(12);
  PaddedMatrix a = padded_random_matrix(300, 256, 0, rng), b = padded_random_matrix(256, 500, 0, rng);
  std::vector<float> first(300 * 500), second(300 * 500);
  onednn_sgemm(false, false, 300, 500, 256, a.data.data(), 256, b.data.data(), 500, 0, first.data(), 500);
  onednn_sgemm(false, false, 300, 500, 256, a.data.data(), 256, b.data.data(), 500, 0, second.data(), 500);
  EXPECT_EQ(first, second);
}

TEST(OneDnnSgemm, NamesItsVersion) {
  if (!onednn_sgemm_built()) {
    EXPECT_EQ(onednn_version(), "none");
    EXPECT_THROW(onednn_sgemm(false, false, 1, 1, 1, nullptr, 1, nullptr, 1, 0, nullptr, 1), std::runtime_error);
    return;
  }
  EXPECT_EQ(onednn_version().rfind("oneDNN ", 0), 0u) << onednn_version();
}

}  // namespace
}  // namespace nextn::kernels
