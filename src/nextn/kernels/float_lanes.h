// Float lanes as GCC/Clang vectors for the CPU kernels: plain arithmetic on them compiles to one
// register of the calling entry point's instruction set (8 lanes: one AVX register; 16 lanes: one
// AVX-512 register) and to pairs of SSE/NEON registers in a portable entry point.
#pragma once

#include <cstdint>

namespace nextn::kernels {

using Lanes4 = float __attribute__((vector_size(16)));
using Lanes8 = float __attribute__((vector_size(32)));
using Lanes16 = float __attribute__((vector_size(64)));

template <typename V>
constexpr int64_t kLanesOf = static_cast<int64_t>(sizeof(V) / sizeof(float));

template <typename V>
inline V load_lanes(const float* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(v));  // unaligned load
  return v;
}

template <typename V>
inline void store_lanes(float* p, V v) {
  __builtin_memcpy(p, &v, sizeof(v));  // unaligned store
}

}  // namespace nextn::kernels
