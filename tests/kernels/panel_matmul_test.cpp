// The panel kernel (decoding's packed weights): every code path, row count and thread count gives
// panel_matmul_reference's std::fma chain bit for bit (so a row never depends on the rows beside
// it); the reference itself matches a double-precision product; the packing holds the matrix; and
// few_rows_matmul takes the panels exactly while a matrix is registered. The same for bfloat16
// copies, whose weights are the matrix rounded as torch rounds to bfloat16.
#include <c10/util/BFloat16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernel_test_support.h"
#include "nextn/kernels/few_rows_matmul.h"
#include "nextn/kernels/panel_matmul.h"

namespace nextn::kernels {
namespace panel_tests {

// Outputs: fewer than a panel, one past a panel, many panels; inputs: 1, odd, a model's widths.
const std::vector<std::pair<int64_t, int64_t>> kShapes = {{1, 1}, {5, 3}, {47, 17}, {49, 64}, {97, 256}, {300, 768}};

TEST(PanelMatmul, PackingHoldsTheMatrixAndZeroPadding) {
  std::mt19937 rng(1);
  const Matrix w = random_matrix(50, 7, 9, rng);
  const PanelMatrix p(w.view());
  EXPECT_EQ(p.panels(), 2);
  for (int64_t o = 0; o < 50; ++o) {
    for (int64_t i = 0; i < 7; ++i) ASSERT_EQ(p.weight(o, i), w.data[o * 9 + i]) << o << "," << i;
  }
  for (int64_t o = 50; o < 2 * kPanelWidth; ++o) {
    for (int64_t i = 0; i < 7; ++i) ASSERT_EQ(p.panel(1)[i * kPanelWidth + o - kPanelWidth], 0.0f);
  }
  EXPECT_EQ(PanelMatrix::bytes_for(50, 7), 2 * 7 * kPanelWidth * 4);
}

TEST(PanelMatmul, ReferenceIsTheProduct) {
  std::mt19937 rng(2);
  for (auto [outputs, inputs] : kShapes) {
    const Matrix w = random_matrix(outputs, inputs, inputs, rng), x = random_matrix(3, inputs, inputs + 5, rng);
    std::vector<float> out(3 * outputs);
    panel_matmul_reference(x.view(), PanelMatrix(w.view()), out.data(), outputs);
    for (int64_t r = 0; r < 3; ++r) {
      for (int64_t o = 0; o < outputs; ++o) {
        double exact = 0;
        for (int64_t i = 0; i < inputs; ++i) exact += double(x.data[r * x.stride + i]) * w.data[o * inputs + i];
        ASSERT_NEAR(out[r * outputs + o], exact, 1e-5 * std::sqrt(double(inputs))) << r << "," << o;
      }
    }
  }
}

TEST(PanelMatmul, EveryPathRowCountAndThreadCountIsTheReferenceBitForBit) {
  KernelSettings restore;
  std::mt19937 rng(3);
  for (auto [outputs, inputs] : kShapes) {
    const Matrix w = random_matrix(outputs, inputs, inputs + 3, rng);
    const Matrix x = random_matrix(kFewRowsMax, inputs, inputs + 1, rng);
    for (PanelType type : {PanelType::kFloat32, PanelType::kBfloat16, PanelType::kBfloat16Dot}) {
    const PanelMatrix p(w.view(), type);
    for (FewRowsPath path : paths_here()) {
      force_few_rows_matmul_path(path);
      // bf16 products: on vdpbf16ps where this CPU has it, and in fused multiply-adds.
      for (bool instruction : {true, false}) {
      if (!instruction && type != PanelType::kBfloat16Dot) continue;
      allow_bfloat16_dot_instruction(instruction);
      for (int threads : {1, 2, 3}) {
        set_few_rows_matmul_threads(threads);
        for (int64_t rows = 1; rows <= kFewRowsMax; ++rows) {
          SCOPED_TRACE(std::string(few_rows_matmul_path_name(path)) + ", " + std::to_string(outputs) + "x" +
                       std::to_string(inputs) + ", rows " + std::to_string(rows) + ", threads " +
                       std::to_string(threads) + ", type " + std::to_string(static_cast<int>(type)) +
                       (bfloat16_dot_instruction() ? ", vdpbf16ps" : ""));
          const MatrixView xs{x.data.data(), rows, inputs, x.stride};
          // Output rows strided, with sentinels around each: nothing outside [0, outputs) is written.
          const int64_t out_stride = outputs + 2;
          std::vector<float> got(rows * out_stride, -7.0f), want(rows * out_stride, -7.0f);
          panel_matmul(xs, p, got.data(), out_stride);
          panel_matmul_reference(xs, p, want.data(), out_stride);
          ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
          for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(got[r * out_stride + outputs], -7.0f);
          // A row alone gives the same bits as among others.
          std::vector<float> alone(outputs);
          panel_matmul({x.data.data() + (rows - 1) * x.stride, 1, inputs, x.stride}, p, alone.data(), outputs);
          ASSERT_EQ(std::memcmp(alone.data(), got.data() + (rows - 1) * out_stride, outputs * sizeof(float)), 0);
        }
      }
      }
    }
    }
  }
  allow_bfloat16_dot_instruction(true);
}

float torch_bfloat16(float value) { return static_cast<float>(c10::BFloat16(value)); }

uint32_t bits_of(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

float float_of(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

TEST(PanelMatmul, RoundingToBfloat16IsTorchs) {
  // Ties both ways (to even), one past a tie, signed zeros, infinities, NaN, the largest float
  // (rounds up to infinity), subnormals, and random values over many magnitudes.
  std::vector<float> values = {float_of(0x3f808000), float_of(0x3f818000), float_of(0x3f808001), 0.0f, -0.0f,
                               INFINITY, -INFINITY, NAN, 3.4028235e38f, -3.4028235e38f, float_of(0x00008000),
                               float_of(0x00018000), float_of(0x00000001), 1.17549435e-38f};
  std::mt19937 rng(6);
  std::uniform_int_distribution<uint32_t> any_bits;
  for (int i = 0; i < 20000; ++i) values.push_back(float_of(any_bits(rng)));
  for (float v : values) {
    const uint16_t ours = round_to_bfloat16(v);
    const c10::BFloat16 theirs(v);
    if (std::isnan(v)) {
      ASSERT_TRUE(std::isnan(bfloat16_to_float(ours))) << bits_of(v);
      continue;
    }
    ASSERT_EQ(ours, theirs.x) << "float bits " << bits_of(v);
    ASSERT_EQ(bits_of(bfloat16_to_float(ours)), bits_of(static_cast<float>(theirs))) << bits_of(v);
  }
  EXPECT_EQ(bits_of(bfloat16_to_float(round_to_bfloat16(float_of(0x3f808000)))), 0x3f800000u);  // tie, to even: down
  EXPECT_EQ(bits_of(bfloat16_to_float(round_to_bfloat16(float_of(0x3f818000)))), 0x3f820000u);  // tie, to even: up
}

TEST(PanelMatmul, Bfloat16PanelsHoldTheRoundedMatrixInHalfTheBytes) {
  std::mt19937 rng(7);
  const Matrix w = random_matrix(50, 7, 9, rng);
  const PanelMatrix p(w.view(), PanelType::kBfloat16);
  EXPECT_EQ(p.type(), PanelType::kBfloat16);
  bool any_rounded = false;
  for (int64_t o = 0; o < 50; ++o) {
    for (int64_t i = 0; i < 7; ++i) {
      const float original = w.data[o * 9 + i];
      ASSERT_EQ(bits_of(p.weight(o, i)), bits_of(torch_bfloat16(original))) << o << "," << i;
      any_rounded = any_rounded || p.weight(o, i) != original;
    }
  }
  EXPECT_TRUE(any_rounded);
  for (int64_t o = 50; o < 2 * kPanelWidth; ++o) {
    for (int64_t i = 0; i < 7; ++i) ASSERT_EQ(p.panel_bf16(1)[i * kPanelWidth + o - kPanelWidth], 0);
  }
  EXPECT_EQ(PanelMatrix::bytes_for(50, 7, PanelType::kBfloat16), 2 * 7 * kPanelWidth * 2);
}

// The bfloat16 kernel's chain against a direct one over the rounded weights, and a matrix of
// bfloat16 values gives the float32 copy's bits: what `--precision auto` relies on.
TEST(PanelMatmul, Bfloat16PanelsComputeTheRoundedMatrixsProduct) {
  KernelSettings restore;
  std::mt19937 rng(8);
  for (auto [outputs, inputs] : kShapes) {
    Matrix w = random_matrix(outputs, inputs, inputs, rng);
    const Matrix x = random_matrix(kFewRowsMax, inputs, inputs, rng);
    const PanelMatrix p(w.view(), PanelType::kBfloat16);
    std::vector<float> got(kFewRowsMax * outputs);
    panel_matmul(x.view(), p, got.data(), outputs);
    for (int64_t r = 0; r < kFewRowsMax; ++r) {
      for (int64_t o = 0; o < outputs; ++o) {
        float chain = 0.0f;
        for (int64_t i = 0; i < inputs; ++i) chain = std::fma(x.data[r * inputs + i], torch_bfloat16(w.data[o * inputs + i]), chain);
        ASSERT_EQ(bits_of(got[r * outputs + o]), bits_of(chain)) << r << "," << o;
      }
    }
    EXPECT_FALSE(holds_bfloat16_exactly(w.view()));
    for (float& v : w.data) v = torch_bfloat16(v);
    ASSERT_TRUE(holds_bfloat16_exactly(w.view()));
    for (FewRowsPath path : paths_here()) {
      force_few_rows_matmul_path(path);
      std::vector<float> from_fp32(kFewRowsMax * outputs), from_bf16(kFewRowsMax * outputs);
      panel_matmul(x.view(), PanelMatrix(w.view(), PanelType::kFloat32), from_fp32.data(), outputs);
      panel_matmul(x.view(), PanelMatrix(w.view(), PanelType::kBfloat16), from_bf16.data(), outputs);
      ASSERT_EQ(std::memcmp(from_fp32.data(), from_bf16.data(), from_fp32.size() * sizeof(float)), 0)
          << few_rows_matmul_path_name(path) << ", " << outputs << "x" << inputs;
    }
    // One value off a bfloat16 by its last float32 bit: not exactly bfloat16 any more.
    w.data[w.data.size() / 2] = float_of(bits_of(w.data[w.data.size() / 2]) | 1u);
    EXPECT_FALSE(holds_bfloat16_exactly(w.view()));
  }
}

TEST(PanelMatmul, DotOperandsAreBfloat16WithSubnormalsAsZero) {
  EXPECT_EQ(bfloat16_dot_operand(1.0f), 0x3f80);
  EXPECT_EQ(bfloat16_dot_operand(float_of(0x3f818000)), round_to_bfloat16(float_of(0x3f818000)));
  EXPECT_EQ(bfloat16_dot_operand(float_of(0x00400000)), 0x0000);  // a subnormal: +0
  EXPECT_EQ(bfloat16_dot_operand(float_of(0x80400000)), 0x8000);  // -0
  EXPECT_EQ(bfloat16_dot_operand(float_of(0x007fffff)), 0x0080);  // rounds up to the smallest normal: kept
  EXPECT_EQ(bfloat16_dot_operand(1e-39f * 0), 0x0000);
  std::mt19937 rng(9);
  std::uniform_int_distribution<uint32_t> any_bits;
  for (int i = 0; i < 20000; ++i) {
    const float v = float_of(any_bits(rng));
    const uint16_t rounded = round_to_bfloat16(v), operand = bfloat16_dot_operand(v);
    if ((rounded & 0x7f80) == 0) {
      ASSERT_EQ(operand, rounded & 0x8000) << bits_of(v);
    } else {
      ASSERT_EQ(operand, rounded) << bits_of(v);
    }
  }
}

// bf16 products: the packed pairs hold the rounded matrix (odd input counts padded with a zero);
// the product is the float32 one to bfloat16's rounding; and the chain, against one written
// here from the header's formula with torch's rounding, bit for bit.
TEST(PanelMatmul, Bfloat16DotProductsAreTheHeadersChain) {
  std::mt19937 rng(10);
  for (auto [outputs, inputs] : kShapes) {
    const Matrix w = random_matrix(outputs, inputs, inputs + 2, rng), x = random_matrix(kFewRowsMax, inputs, inputs, rng);
    const PanelMatrix p(w.view(), PanelType::kBfloat16Dot);
    EXPECT_EQ(p.pair_count(), (inputs + 1) / 2);
    EXPECT_EQ(PanelMatrix::bytes_for(outputs, inputs, PanelType::kBfloat16Dot),
              (p.panels() * p.pair_count() * kPanelWidth * 4 + 63) / 64 * 64);
    for (int64_t o = 0; o < outputs; ++o) {
      for (int64_t i = 0; i < inputs; ++i) ASSERT_EQ(p.weight(o, i), torch_bfloat16(w.data[o * w.stride + i]));
      if (inputs % 2 == 1) {  // the padding input's weights
        ASSERT_EQ(p.panel_pairs(o / kPanelWidth)[(inputs / 2) * kPanelWidth + o % kPanelWidth] >> 16, 0u);
      }
    }
    std::vector<float> got(kFewRowsMax * outputs);
    panel_matmul(x.view(), p, got.data(), outputs);
    for (int64_t r = 0; r < kFewRowsMax; ++r) {
      for (int64_t o = 0; o < outputs; ++o) {
        float chain = 0.0f;
        double exact = 0.0;
        for (int64_t k = 0; 2 * k < inputs; ++k) {
          for (int64_t i : {2 * k + 1, 2 * k}) {  // the high half first
            if (i >= inputs) continue;
            chain = std::fma(torch_bfloat16(w.data[o * w.stride + i]), torch_bfloat16(x.data[r * x.stride + i]), chain);
            exact += double(w.data[o * w.stride + i]) * x.data[r * x.stride + i];
          }
        }
        ASSERT_EQ(bits_of(got[r * outputs + o]), bits_of(chain)) << r << "," << o;
        ASSERT_NEAR(got[r * outputs + o], exact, 1e-2 * std::sqrt(double(inputs))) << r << "," << o;
      }
    }
  }
}

// Where products and sums fall below float32's normal range, vdpbf16ps flushes them to zero: the
// chain in fused multiply-adds and the reference flush them the same way, bit for bit.
TEST(PanelMatmul, Bfloat16DotProductsFlushSubnormalsOnEveryPath) {
  KernelSettings restore;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  Matrix w = random_matrix(100, 37, 37, rng), x = random_matrix(kFewRowsMax, 37, 37, rng);
  for (float& v : w.data) v *= 3e-20f;  // products near 1e-39 and below: subnormal
  for (float& v : x.data) v *= 4e-19f;
  for (size_t i = 0; i < x.data.size(); i += 3) x.data[i] = uniform(rng) * 1e-38f;  // subnormal operands too
  const PanelMatrix p(w.view(), PanelType::kBfloat16Dot);
  std::vector<float> want(kFewRowsMax * 100);
  panel_matmul_reference(x.view(), p, want.data(), 100);
  int zeros = 0;
  for (float v : want) zeros += v == 0.0f;
  EXPECT_GT(zeros, 50);  // flushed
  for (FewRowsPath path : paths_here()) {
    force_few_rows_matmul_path(path);
    for (bool instruction : {true, false}) {
      allow_bfloat16_dot_instruction(instruction);
      std::vector<float> got(kFewRowsMax * 100);
      panel_matmul(x.view(), p, got.data(), 100);
      ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
          << few_rows_matmul_path_name(path) << (bfloat16_dot_instruction() ? ", vdpbf16ps" : "");
    }
  }
  allow_bfloat16_dot_instruction(true);
}

TEST(PanelMatmul, FewRowsMatmulTakesTheRegisteredPanelsOnly) {
  std::mt19937 rng(4);
  const Matrix w = random_matrix(100, 64, 64, rng), x = random_matrix(3, 64, 64, rng);
  std::vector<float> rows_kernel(300), panels(300), registered(300), other_view(3 * 99);
  few_rows_matmul(x.view(), w.view(), rows_kernel.data(), 100);
  panel_matmul(x.view(), PanelMatrix(w.view()), panels.data(), 100);
  // The two kernels sum in different orders: equal to rounding, not (here) bit for bit.
  EXPECT_NE(std::memcmp(rows_kernel.data(), panels.data(), 300 * sizeof(float)), 0);
  const int64_t before = registered_panel_count();
  register_panels(w.view());
  EXPECT_EQ(registered_panel_count(), before + 1);
  ASSERT_NE(registered_panels(w.view()), nullptr);
  few_rows_matmul(x.view(), w.view(), registered.data(), 100);
  EXPECT_EQ(std::memcmp(registered.data(), panels.data(), 300 * sizeof(float)), 0);
  // Another view of the same memory (one row fewer) is not the registered matrix.
  EXPECT_EQ(registered_panels({w.data.data(), 99, 64, 64}), nullptr);
  few_rows_matmul(x.view(), {w.data.data(), 99, 64, 64}, other_view.data(), 99);
  for (int64_t r = 0; r < 3; ++r) {
    EXPECT_EQ(std::memcmp(other_view.data() + r * 99, rows_kernel.data() + r * 100, 99 * sizeof(float)), 0);
  }
  // Registered twice (two holders of one model): registered until both let go.
  register_panels(w.view());
  EXPECT_EQ(registered_panel_count(), before + 1);
  unregister_panels(w.view());
  EXPECT_NE(registered_panels(w.view()), nullptr);
  unregister_panels(w.view());
  EXPECT_EQ(registered_panels(w.view()), nullptr);
  EXPECT_EQ(registered_panel_count(), before);
  few_rows_matmul(x.view(), w.view(), registered.data(), 100);
  EXPECT_EQ(std::memcmp(registered.data(), rows_kernel.data(), 300 * sizeof(float)), 0);
  // A bfloat16 copy is taken the same way; one matrix cannot hold copies of both types at once.
  std::vector<float> bf16_panels(300);
  panel_matmul(x.view(), PanelMatrix(w.view(), PanelType::kBfloat16), bf16_panels.data(), 100);
  register_panels(w.view(), PanelType::kBfloat16);
  EXPECT_THROW(register_panels(w.view(), PanelType::kFloat32), std::invalid_argument);
  few_rows_matmul(x.view(), w.view(), registered.data(), 100);
  EXPECT_EQ(std::memcmp(registered.data(), bf16_panels.data(), 300 * sizeof(float)), 0);
  unregister_panels(w.view());
  EXPECT_EQ(registered_panels(w.view()), nullptr);
  EXPECT_EQ(registered_panel_count(), before);
}

TEST(PanelMatmul, BadShapesAreRefused) {
  std::mt19937 rng(5);
  const Matrix w = random_matrix(10, 8, 8, rng), x = random_matrix(kFewRowsMax + 1, 8, 8, rng);
  const PanelMatrix p(w.view());
  std::vector<float> out(10 * (kFewRowsMax + 1));
  EXPECT_THROW(panel_matmul({x.data.data(), kFewRowsMax + 1, 8, 8}, p, out.data(), 10), std::invalid_argument);
  EXPECT_THROW(panel_matmul({x.data.data(), 0, 8, 8}, p, out.data(), 10), std::invalid_argument);
  EXPECT_THROW(panel_matmul({x.data.data(), 1, 7, 8}, p, out.data(), 10), std::invalid_argument);
  EXPECT_THROW(PanelMatrix({w.data.data(), 10, 8, 4}), std::invalid_argument);
}

}  // namespace panel_tests
}  // namespace nextn::kernels
