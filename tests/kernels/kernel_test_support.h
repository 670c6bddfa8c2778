// Shared by the kernel tests (one executable, one unity translation unit: helpers live here once):
// random matrices whose row padding is NaN, the code paths this CPU has, and a guard that restores
// the kernels' path and thread count.
#pragma once

#include <cmath>
#include <random>
#include <vector>

#include "nextn/kernels/few_rows_matmul.h"

namespace nextn::kernels {

struct Matrix {
  std::vector<float> data;
  int64_t rows, cols, stride;
  MatrixView view() const { return {data.data(), rows, cols, stride}; }
};

// Values in [-1, 1), with the padding past each row set to NaN: reading it would show.
inline Matrix random_matrix(int64_t rows, int64_t cols, int64_t stride, std::mt19937& rng) {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  Matrix m{std::vector<float>(rows * stride, std::nanf("")), rows, cols, stride};
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) m.data[r * stride + c] = uniform(rng);
  }
  return m;
}

// Restores the path and thread count a test changed.
class KernelSettings {
 public:
  KernelSettings() : path_(few_rows_matmul_path()), threads_(few_rows_matmul_threads()) {}
  ~KernelSettings() {
    force_few_rows_matmul_path(path_);
    set_few_rows_matmul_threads(threads_);
  }

 private:
  FewRowsPath path_;
  int threads_;
};

inline std::vector<FewRowsPath> paths_here() {
  std::vector<FewRowsPath> paths;
  for (FewRowsPath path : {FewRowsPath::kPortable, FewRowsPath::kAvx2Fma, FewRowsPath::kAvx512}) {
    if (few_rows_matmul_path_available(path)) paths.push_back(path);
  }
  return paths;
}

}  // namespace nextn::kernels
