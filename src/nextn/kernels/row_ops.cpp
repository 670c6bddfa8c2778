#include "nextn/kernels/row_ops.h"

#include <cmath>

namespace nextn::kernels {
namespace {

// Sum of squares with 16 independent partial sums (the compiler keeps them in vector registers;
// one running sum would serialise every add), added up in double at the end.
double sum_of_squares(const float* x, int64_t dim) {
  constexpr int64_t kPartials = 16;
  float partial[kPartials] = {};
  int64_t i = 0;
  for (; i + kPartials <= dim; i += kPartials) {
    for (int64_t l = 0; l < kPartials; ++l) partial[l] += x[i + l] * x[i + l];
  }
  double total = 0.0;
  for (; i < dim; ++i) total += static_cast<double>(x[i]) * x[i];
  for (float p : partial) total += p;
  return total;
}

}  // namespace

void rms_norm_rows(const float* x, int64_t rows, int64_t dim, int64_t x_row_stride, const float* weight, double eps,
                   float* out, int64_t out_row_stride) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * x_row_stride;
    float* o = out + r * out_row_stride;
    const auto inverse_rms = static_cast<float>(1.0 / std::sqrt(sum_of_squares(in, dim) / dim + eps));
    for (int64_t i = 0; i < dim; ++i) o[i] = in[i] * inverse_rms * weight[i];
  }
}

void rotate_pairs(float* x, int64_t dim, const float* cos, const float* sin) {
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float even = x[2 * i], odd = x[2 * i + 1];
    x[2 * i] = even * cos[i] - odd * sin[i];
    x[2 * i + 1] = even * sin[i] + odd * cos[i];
  }
}

void sigmoid_in_place(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = 1.0f / (1.0f + std::exp(-x[i]));
}

void swiglu(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace nextn::kernels
