// AdamW's update of one float32 parameter in one pass over memory: reads p, g, m, v once and
// writes p, m, v once. Written as libtorch operators the same update is nine passes and two
// temporaries (training/adamw.cpp keeps that form as the reference, and for other dtypes and
// devices); the optimizer is memory traffic, so the passes are its cost.
#pragma once

#include <cstdint>

namespace nextn::kernels {

// The step's constants (the per-step scalars of training/adamw.h's rule).
struct AdamWStepConstants {
  float decay = 1;             // 1 - lr * weight_decay, or 1 outside the decay group
  float beta1 = 0.9f, beta2 = 0.95f;
  float one_minus_beta1 = 0.1f, one_minus_beta2 = 0.05f;
  float sqrt_bias_correction2 = 1;  // sqrt(1 - beta2^t)
  float eps = 1e-8f;
  float step_size = 0;         // lr / (1 - beta1^t)
};

// For i < n, in float32 (each element's arithmetic the same whatever n and i are):
//   m[i] = fma(g, 1 - b1, b1 * m)          v[i] = fma(g * g, 1 - b2, b2 * v)
//   p[i] = fma(-step_size, m / (sqrt(v) / sqrt_bc2 + eps), decay * p)
// Splits n over libtorch's intra-op threads.
void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamWStepConstants& c);

// sum_i x[i]^2 in double, without a double copy of x (gradient clipping's norm). The same bits
// whatever the thread count: blocks of a fixed size, each summed in a fixed order, added in order.
double sum_of_squares(const float* x, int64_t n);

}  // namespace nextn::kernels
