#include "nextn/kernels/adamw_update.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace nextn::kernels {
namespace {

// One element, in the order the vector path computes it (std::fma rounds once, as vfmadd does).
inline void update_one(float& p, float g, float& m, float& v, const AdamWStepConstants& c) {
  m = std::fma(g, c.one_minus_beta1, c.beta1 * m);
  v = std::fma(g * g, c.one_minus_beta2, c.beta2 * v);
  const float denom = std::sqrt(v) / c.sqrt_bias_correction2 + c.eps;
  p = std::fma(-c.step_size, m / denom, c.decay * p);
}

void update_scalar(float* p, const float* g, float* m, float* v, int64_t begin, int64_t end,
                   const AdamWStepConstants& c) {
  for (int64_t i = begin; i < end; ++i) update_one(p[i], g[i], m[i], v[i], c);
}

__attribute__((target("avx2,fma"))) void update_avx2(float* p, const float* g, float* m, float* v, int64_t begin,
                                                     int64_t end, const AdamWStepConstants& c) {
  const __m256 beta1 = _mm256_set1_ps(c.beta1), beta2 = _mm256_set1_ps(c.beta2);
  const __m256 one_minus_beta1 = _mm256_set1_ps(c.one_minus_beta1), one_minus_beta2 = _mm256_set1_ps(c.one_minus_beta2);
  const __m256 sqrt_bc2 = _mm256_set1_ps(c.sqrt_bias_correction2), eps = _mm256_set1_ps(c.eps);
  const __m256 neg_step = _mm256_set1_ps(-c.step_size), decay = _mm256_set1_ps(c.decay);
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    const __m256 gi = _mm256_loadu_ps(g + i);
    const __m256 mi = _mm256_fmadd_ps(gi, one_minus_beta1, _mm256_mul_ps(beta1, _mm256_loadu_ps(m + i)));
    const __m256 vi = _mm256_fmadd_ps(_mm256_mul_ps(gi, gi), one_minus_beta2, _mm256_mul_ps(beta2, _mm256_loadu_ps(v + i)));
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), sqrt_bc2), eps);
    const __m256 pi = _mm256_fmadd_ps(neg_step, _mm256_div_ps(mi, denom), _mm256_mul_ps(decay, _mm256_loadu_ps(p + i)));
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
    _mm256_storeu_ps(p + i, pi);
  }
  update_scalar(p, g, m, v, i, end, c);
}

bool has_avx2_fma() {
  static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return supported;
}

}  // namespace

void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamWStepConstants& c) {
  // Chunks of 64K elements (768 KiB of the four arrays): enough work per task, and a small
  // parameter stays on one thread.
  at::parallel_for(0, n, 1 << 16, [&](int64_t begin, int64_t end) {
    if (has_avx2_fma()) {
      update_avx2(p, g, m, v, begin, end, c);
    } else {
      update_scalar(p, g, m, v, begin, end, c);
    }
  });
}

double sum_of_squares(const float* x, int64_t n) {
  constexpr int64_t kBlock = 1 << 14;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
  at::parallel_for(0, blocks, 4, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b) {
      const int64_t begin = b * kBlock, end = std::min(n, begin + kBlock);
      double lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // independent sums: the loop need not wait on one
      int64_t i = begin;
      for (; i + 8 <= end; i += 8) {
        for (int j = 0; j < 8; ++j) lanes[j] += static_cast<double>(x[i + j]) * static_cast<double>(x[i + j]);
      }
      for (int j = 0; i < end; ++i, ++j) lanes[j] += static_cast<double>(x[i]) * static_cast<double>(x[i]);
      partial[static_cast<size_t>(b)] =
          ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    }
  });
  double total = 0;
  for (double s : partial) total += s;
  return total;
}

}  // namespace nextn::kernels
