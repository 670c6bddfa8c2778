// The few-rows kernel against its naive reference loop: every row count, awkward shapes (columns
// not a multiple of the 8 or 16 lanes, outputs not a multiple of the tile), strided rows, every
// code path this CPU has, and thread counts; threads only split outputs, so their results are bit-identical.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernel_test_support.h"
#include "nextn/kernels/few_rows_matmul.h"

namespace nextn::kernels {
namespace {

// Runs test(rows) for every row count under every code path this CPU has.
template <class Test>
void for_every_path_and_row_count(Test&& test) {
  for (FewRowsPath path : paths_here()) {
    force_few_rows_matmul_path(path);
    for (int64_t rows = 1; rows <= kFewRowsMax; ++rows) test(rows);
  }
}

// |fast - reference| <= 1e-6 * sum_i |x_i w_i| + 1e-7: float rounding of an n-term dot product.
void expect_matches_reference(const Matrix& x, const Matrix& w, const std::vector<float>& out, int64_t out_stride,
                              const std::string& what) {
  std::vector<float> expected(x.rows * w.rows);
  few_rows_matmul_reference(x.view(), w.view(), expected.data(), w.rows);
  for (int64_t r = 0; r < x.rows; ++r) {
    for (int64_t o = 0; o < w.rows; ++o) {
      double magnitude = 0;
      for (int64_t i = 0; i < x.cols; ++i) {
        magnitude += std::abs(static_cast<double>(x.data[r * x.stride + i]) * w.data[o * w.stride + i]);
      }
      ASSERT_NEAR(out[r * out_stride + o], expected[r * w.rows + o], 1e-6 * magnitude + 1e-7)
          << what << ", row " << r << ", output " << o;
    }
  }
}

TEST(FewRowsMatmul, ReferenceIsTheDefinition) {
  // 2 rows x 3 columns times a 2 x 3 weight, worked by hand.
  const std::vector<float> x{1, 2, 3, -1, 0, 2};
  const std::vector<float> w{1, 0, -1, 0.5f, 0.25f, 2};
  std::vector<float> out(4);
  few_rows_matmul_reference({x.data(), 2, 3, 3}, {w.data(), 2, 3, 3}, out.data(), 2);
  EXPECT_EQ(out, (std::vector<float>{-2, 7, -3, 3.5f}));
}

TEST(FewRowsMatmul, EveryRowCountAndShapeMatchesTheReference) {
  KernelSettings restore;
  std::mt19937 rng(7);
  const int64_t shapes[][2] = {{1, 1},    {3, 7},     {5, 8},    {9, 9},     {13, 17},
                               {64, 256}, {37, 100},  {300, 129}, {41, 31}, {100, 1024}};
  for (FewRowsPath path : paths_here()) {
    force_few_rows_matmul_path(path);
    for (const auto& shape : shapes) {
      const int64_t outputs = shape[0], cols = shape[1];
      const Matrix w = random_matrix(outputs, cols, cols, rng);
      for (int64_t rows = 1; rows <= kFewRowsMax; ++rows) {
        const Matrix x = random_matrix(rows, cols, cols, rng);
        std::vector<float> out(rows * outputs, std::nanf(""));
        few_rows_matmul(x.view(), w.view(), out.data(), outputs);
        expect_matches_reference(x, w, out, outputs,
                                 std::string(few_rows_matmul_path_name(path)) + ", " + std::to_string(rows) +
                                     " rows, weight " + std::to_string(outputs) + "x" + std::to_string(cols));
      }
    }
  }
}

TEST(FewRowsMatmul, StridedRowsLeaveTheGapsAlone) {
  // Row strides past the row on x, the weight (a slice of a wider matrix) and out (a view of a
  // larger buffer): only out's rows are written, the padding read from x and w is NaN.
  KernelSettings restore;
  std::mt19937 rng(11);
  const Matrix w = random_matrix(21, 19, 24, rng);
  for_every_path_and_row_count([&](int64_t rows) {
    const Matrix x = random_matrix(rows, 19, 32, rng);
    const int64_t out_stride = 25;
    std::vector<float> out(rows * out_stride, -7.0f);
    few_rows_matmul(x.view(), w.view(), out.data(), out_stride);
    expect_matches_reference(x, w, out, out_stride, std::to_string(rows) + " strided rows");
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t o = w.rows; o < out_stride; ++o) EXPECT_EQ(out[r * out_stride + o], -7.0f);
    }
  });
}

TEST(FewRowsMatmul, ThreadsGiveBitIdenticalResults) {
  // Large enough for several threads to be used; outputs are split between them, never a sum.
  KernelSettings restore;
  std::mt19937 rng(5);
  const Matrix w = random_matrix(2051, 256, 256, rng);
  for_every_path_and_row_count([&](int64_t rows) {
    const Matrix x = random_matrix(rows, 256, 256, rng);
    std::vector<float> one(rows * w.rows), several(rows * w.rows);
    set_few_rows_matmul_threads(1);
    few_rows_matmul(x.view(), w.view(), one.data(), w.rows);
    set_few_rows_matmul_threads(3);
    few_rows_matmul(x.view(), w.view(), several.data(), w.rows);
    EXPECT_EQ(one, several) << rows << " rows";
    expect_matches_reference(x, w, several, w.rows, std::to_string(rows) + " rows, 3 threads");
  });
}

// bfloat16 weights: values with 8 significant bits (k / 128 x 2^e), which bfloat16 holds exactly,
// so their float32 copy is the same matrix and the float32 reference is the expected product.
struct Bf16Matrix {
  std::vector<uint16_t> bits;
  Matrix as_float;  // the same values in float32 (NaN padding)
  Bf16MatrixView view() const { return {bits.data(), as_float.rows, as_float.cols, as_float.stride}; }
};

Bf16Matrix random_bf16_matrix(int64_t rows, int64_t cols, int64_t stride, std::mt19937& rng) {
  std::uniform_int_distribution<int> mantissa(-255, 255), exponent(-12, 2);
  Bf16Matrix m{std::vector<uint16_t>(rows * stride, 0x7fc0), {std::vector<float>(rows * stride, std::nanf("")), rows,
                                                              cols, stride}};
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const float value = std::ldexp(static_cast<float>(mantissa(rng)) / 128.0f, exponent(rng));
      uint32_t bits;
      std::memcpy(&bits, &value, sizeof(bits));
      EXPECT_EQ(bits & 0xffffu, 0u) << value << " is not a bfloat16 value";
      m.bits[r * stride + c] = static_cast<uint16_t>(bits >> 16);
      m.as_float.data[r * stride + c] = value;
    }
  }
  return m;
}

TEST(FewRowsMatmul, Bf16ToFloatWidensExactly) {
  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_float(0xc040), -3.0f);
  EXPECT_EQ(bf16_to_float(0x3e20), 0.15625f);
  EXPECT_EQ(bf16_to_float(0x0000), 0.0f);
  EXPECT_TRUE(std::isinf(bf16_to_float(0x7f80)));
  EXPECT_TRUE(std::isnan(bf16_to_float(0x7fc0)));
}

TEST(FewRowsMatmul, Bf16WeightsMatchTheFloatProductOfTheSameValues) {
  KernelSettings restore;
  std::mt19937 rng(17);
  const int64_t shapes[][3] = {{1, 1, 1}, {3, 7, 7}, {9, 9, 12}, {13, 17, 17}, {37, 100, 104}, {64, 256, 256},
                               {41, 31, 40}, {300, 129, 129}};
  for (FewRowsPath path : paths_here()) {
    force_few_rows_matmul_path(path);
    for (const auto& shape : shapes) {
      const int64_t outputs = shape[0], cols = shape[1];
      const Bf16Matrix w = random_bf16_matrix(outputs, cols, shape[2], rng);
      for (int64_t rows = 1; rows <= kFewRowsMax; ++rows) {
        const Matrix x = random_matrix(rows, cols, cols + 3, rng);
        const int64_t out_stride = outputs + 2;
        std::vector<float> out(rows * out_stride, -7.0f), reference(rows * outputs);
        few_rows_matmul(x.view(), w.view(), out.data(), out_stride);
        const std::string what = std::string(few_rows_matmul_path_name(path)) + ", bf16, " + std::to_string(rows) +
                                 " rows, weight " + std::to_string(outputs) + "x" + std::to_string(cols);
        expect_matches_reference(x, w.as_float, out, out_stride, what);
        // The bf16 reference reads the same bits: equal to the float32 reference (both in double).
        few_rows_matmul_reference(x.view(), w.view(), reference.data(), outputs);
        std::vector<float> float_reference(rows * outputs);
        few_rows_matmul_reference(x.view(), w.as_float.view(), float_reference.data(), outputs);
        EXPECT_EQ(reference, float_reference) << what;
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t o = outputs; o < out_stride; ++o) ASSERT_EQ(out[r * out_stride + o], -7.0f) << what;
        }
      }
    }
  }
}

TEST(FewRowsMatmul, Bf16ThreadsGiveBitIdenticalResults) {
  KernelSettings restore;
  std::mt19937 rng(19);
  const Bf16Matrix w = random_bf16_matrix(2051, 256, 256, rng);
  for_every_path_and_row_count([&](int64_t rows) {
    const Matrix x = random_matrix(rows, 256, 256, rng);
    std::vector<float> one(rows * w.as_float.rows), several(rows * w.as_float.rows);
    set_few_rows_matmul_threads(1);
    few_rows_matmul(x.view(), w.view(), one.data(), w.as_float.rows);
    set_few_rows_matmul_threads(3);
    few_rows_matmul(x.view(), w.view(), several.data(), w.as_float.rows);
    EXPECT_EQ(one, several) << rows << " rows";
    expect_matches_reference(x, w.as_float, several, w.as_float.rows, std::to_string(rows) + " rows, bf16, 3 threads");
  });
}

TEST(FewRowsMatmul, BadShapesAreRefused) {
  const std::vector<float> a(40, 1.0f);
  float out[40];
  EXPECT_THROW(few_rows_matmul({a.data(), 0, 4, 4}, {a.data(), 2, 4, 4}, out, 2), std::invalid_argument);
  EXPECT_THROW(few_rows_matmul({a.data(), kFewRowsMax + 1, 4, 4}, {a.data(), 2, 4, 4}, out, 2),
               std::invalid_argument);
  EXPECT_THROW(few_rows_matmul({a.data(), 1, 4, 4}, {a.data(), 2, 5, 5}, out, 2), std::invalid_argument);
  EXPECT_THROW(few_rows_matmul({a.data(), 1, 4, 3}, {a.data(), 2, 4, 4}, out, 2), std::invalid_argument);
  EXPECT_THROW(few_rows_matmul({nullptr, 1, 4, 4}, {a.data(), 2, 4, 4}, out, 2), std::invalid_argument);
  const std::vector<uint16_t> b(40, 0x3f80);
  EXPECT_THROW(few_rows_matmul({a.data(), 1, 4, 4}, Bf16MatrixView{b.data(), 2, 5, 5}, out, 2), std::invalid_argument);
  EXPECT_THROW(few_rows_matmul({a.data(), 1, 4, 4}, Bf16MatrixView{nullptr, 2, 4, 4}, out, 2), std::invalid_argument);
  EXPECT_THROW(few_rows_matmul({a.data(), kFewRowsMax + 1, 4, 4}, Bf16MatrixView{b.data(), 2, 4, 4}, out, 2),
               std::invalid_argument);
}

TEST(FewRowsMatmul, TheWidestPathIsTakenWhereTheCpuHasIt) {
  // Guards against a build that silently lost a vector path (a wrong define or target attribute).
  KernelSettings restore;
  force_few_rows_matmul_path(FewRowsPath::kPortable);
  EXPECT_EQ(few_rows_matmul_path(), FewRowsPath::kPortable);
  EXPECT_STREQ(few_rows_matmul_path_name(FewRowsPath::kPortable), "portable");
#if defined(__x86_64__)
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  EXPECT_EQ(few_rows_matmul_path_available(FewRowsPath::kAvx2Fma), avx2);
  EXPECT_EQ(few_rows_matmul_path_available(FewRowsPath::kAvx512), avx512);
  for (FewRowsPath path : {FewRowsPath::kAvx2Fma, FewRowsPath::kAvx512}) {
    if (few_rows_matmul_path_available(path)) {
      force_few_rows_matmul_path(path);
      EXPECT_EQ(few_rows_matmul_path(), path);
    } else {
      EXPECT_THROW(force_few_rows_matmul_path(path), std::invalid_argument);
    }
  }
#endif
}

}  // namespace
}  // namespace nextn::kernels
