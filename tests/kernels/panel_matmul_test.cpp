// The panel kernel (decoding's packed weights): every code path, row count and thread count gives
// panel_matmul_reference's std::fma chain bit for bit (so a row never depends on the rows beside
// it); the reference itself matches a double-precision product; the packing holds the matrix; and
// few_rows_matmul takes the panels exactly while a matrix is registered.
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
    const PanelMatrix p(w.view());
    for (FewRowsPath path : paths_here()) {
      force_few_rows_matmul_path(path);
      for (int threads : {1, 2, 3}) {
        set_few_rows_matmul_threads(threads);
        for (int64_t rows = 1; rows <= kFewRowsMax; ++rows) {
          SCOPED_TRACE(std::string(few_rows_matmul_path_name(path)) + ", " + std::to_string(outputs) + "x" +
                       std::to_string(inputs) + ", rows " + std::to_string(rows) + ", threads " +
                       std::to_string(threads));
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
