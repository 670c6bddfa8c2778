// Per-row operations of decoding's few rows, as plain loops: RMSNorm, the rotary embedding and the
// gates' element-wise functions.
// In libtorch each is 6-12 operators of ~1 us dispatch for a few hundred floats of work (an
// RMSNorm of one 256-wide row took 7 us, a rotation 8 us); here each is well under 1 us.
#pragma once

#include <cstdint>

namespace nextn::kernels {

// out[r][i] = x[r][i] / sqrt(mean_i(x[r][i]^2) + eps) * weight[i] (DeepSeek-V3's RMSNorm), for
// rows r < rows; row r of x starts at x + r * x_row_stride, of out at out + r * out_row_stride.
// out may equal x (in place).
void rms_norm_rows(const float* x, int64_t rows, int64_t dim, int64_t x_row_stride, const float* weight, double eps,
                   float* out, int64_t out_row_stride);

// Rotates the dim / 2 interleaved pairs (x[2i], x[2i+1]) of one vector in place by the angles
// whose cosines and sines are cos[i], sin[i] (RoFormer's rotation, as apply_rotary does).
void rotate_pairs(float* x, int64_t dim, const float* cos, const float* sin);

// Element by element, each value computed the same way whatever n is: libtorch's vectorised
// sigmoid and silu compute the elements of a short tail another way than the others (a few ulp
// apart), so a token's values would depend on how many tokens share the call, and a speculative
// verify's rows would not be bit for bit plain decoding's.
// x[i] = 1 / (1 + exp(-x[i])): the routers' affinities.
void sigmoid_in_place(float* x, int64_t n);
// out[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i]: SwiGLU's gating.
void swiglu(const float* gate, const float* up, int64_t n, float* out);

}  // namespace nextn::kernels
