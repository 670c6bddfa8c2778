#include "nextn/kernels/panel_matmul.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "nextn/kernels/float_lanes.h"
#include "nextn/kernels/worker_pool.h"

namespace nextn::kernels {
namespace {

// Groups ahead that a panel's stream prefetches (a group: the panel's weights of one input, 192
// bytes in float32 and 96 in bfloat16, or of one pair of inputs, 192).
constexpr int64_t kPrefetchInputs = 24;

// x's rows as the operands of a kBfloat16Dot copy: word r * pairs + k holds
// bfloat16_dot_operand(x[r][2k]) in its low half and of x[r][2k+1] (0 past the last input) in its
// high half, the layout of the copy's weight pairs.
struct OperandPairs {
  const uint32_t* data = nullptr;
  int64_t pairs = 0;
};

// What a span multiplies: x, and for a kBfloat16Dot copy its operand pairs.
struct SpanInput {
  MatrixView x;
  OperandPairs pairs;
};

#if defined(__x86_64__) && defined(__GNUC__)
#if !defined(__clang__)
// One fused multiply-add per lane, a * b + c rounded once: std::fma's arithmetic, which the
// reference computes, whatever the optimisation level (GCC's -ffp-contract fuses `acc += w * x`
// only from -O2 on). And a float broadcast to every lane.
__attribute__((target("avx512f"))) inline Lanes16 fused_multiply_add(Lanes16 a, Lanes16 b, Lanes16 c) {
  return _mm512_fmadd_ps(a, b, c);
}
__attribute__((target("avx2,fma"))) inline Lanes8 fused_multiply_add(Lanes8 a, Lanes8 b, Lanes8 c) {
  return _mm256_fmadd_ps(a, b, c);
}
__attribute__((target("avx512f"))) inline void broadcast(float x, Lanes16& v) { v = _mm512_set1_ps(x); }
__attribute__((target("avx2"))) inline void broadcast(float x, Lanes8& v) { v = _mm256_set1_ps(x); }
#else
// Clang checks the ABI of a vector call where it is written, and the tile below has no target of
// its own (it takes its entry point's): plain expressions, which Clang's -ffp-contract=fast fuses
// where it can (the fuzz build, which compares no bits; nextn builds with GCC, whose paths the
// bit-for-bit tests hold to the reference).
template <typename V>
inline V fused_multiply_add(V a, V b, V c) {
  return a * b + c;
}
template <typename V>
inline void broadcast(float x, V& v) {
  v = V{} + x;
}
#endif

// A panel's weights as float lanes: float32 as stored; bfloat16 widened (its bits are a float32's
// upper half, so the widening is exact).
template <typename E>
inline const E* panel_of(const PanelMatrix& w, int64_t p);
template <>
inline const float* panel_of<float>(const PanelMatrix& w, int64_t p) {
  return w.panel(p);
}
template <>
inline const uint16_t* panel_of<uint16_t>(const PanelMatrix& w, int64_t p) {
  return w.panel_bf16(p);
}
template <typename V>
inline V load_weights(const float* p) {
  return load_lanes<V>(p);
}
// Lanes of bits: a bfloat16 panel's halves, and a float register's words.
using Halves8 = uint16_t __attribute__((vector_size(16)));
using Halves16 = uint16_t __attribute__((vector_size(32)));
using Words8 = uint32_t __attribute__((vector_size(32)));
using Words16 = uint32_t __attribute__((vector_size(64)));
template <typename V>
using HalvesOf = std::conditional_t<kLanesOf<V> == 16, Halves16, Halves8>;
template <typename V>
using WordsOf = std::conditional_t<kLanesOf<V> == 16, Words16, Words8>;

template <typename To, typename From>
inline To same_bits(From v) {
  static_assert(sizeof(To) == sizeof(From), "a reinterpretation of one register");
  To t;
  __builtin_memcpy(&t, &v, sizeof(t));
  return t;
}

template <typename V>
inline V load_weights(const uint16_t* p) {
  static_assert(kLanesOf<V> == 8 || kLanesOf<V> == 16, "one AVX or AVX-512 register");
  HalvesOf<V> halves;
  __builtin_memcpy(&halves, p, sizeof(halves));  // unaligned load
  return same_bits<V>(__builtin_convertvector(halves, WordsOf<V>) << 16);
}

// The bfloat16 dot chain's ftz: a lane whose exponent is 0 (subnormal) becomes a zero of its sign.
template <typename V>
inline V flush_subnormals(V v) {
  using Words = WordsOf<V>;
  const Words bits = same_bits<Words>(v);
  const Words kept = (Words)((bits & 0x7f800000u) != 0u) | 0x80000000u;  // all bits, or the sign alone
  return same_bits<V>(bits & kept);
}

// Writes a tile's accumulators to its outputs (those past the matrix's last row are padding).
template <typename V, int R, int C, int P>
inline void store_tile(const V (&acc)[P][C][R], int64_t rows, int64_t first_panel, int64_t lane0, float* out,
                       int64_t out_stride) {
  constexpr int64_t kLanes = kLanesOf<V>;
  for (int p = 0; p < P; ++p) {
    const int64_t first_output = (first_panel + p) * kPanelWidth + lane0;
    for (int c = 0; c < C; ++c) {
      const int64_t o = first_output + c * kLanes;
      const int64_t valid = std::min<int64_t>(kLanes, rows - o);
      if (valid <= 0) break;
      for (int r = 0; r < R; ++r) {
        float* dst = out + r * out_stride + o;
        if (valid == kLanes) {
          store_lanes(dst, acc[p][c][r]);
        } else {
          float lanes[kLanes];
          store_lanes(lanes, acc[p][c][r]);
          std::memcpy(dst, lanes, static_cast<size_t>(valid) * sizeof(float));
        }
      }
    }
  }
}

// Panels [begin, end) as tiles: C vectors per pass over a panel, passes until its kPanelWidth
// outputs are done; P panels at once (one row: more independent chains than one panel's vectors
// give), then the panels left one by one. tile(p, lane0, panels_at_once).
template <typename V, int C, int P, typename Tile>
inline void for_each_tile(int64_t begin, int64_t end, Tile tile) {
  constexpr int64_t kPass = C * kLanesOf<V>;
  static_assert(kPanelWidth % kPass == 0, "passes cover a panel exactly");
  int64_t p = begin;
  for (; p + P <= end; p += P) {
    for (int64_t lane0 = 0; lane0 < kPanelWidth; lane0 += kPass) tile(p, lane0, std::integral_constant<int, P>{});
  }
  for (; p < end; ++p) {
    for (int64_t lane0 = 0; lane0 < kPanelWidth; lane0 += kPass) tile(p, lane0, std::integral_constant<int, 1>{});
  }
}

// R rows times C vectors (of V) of P consecutive panels, starting `lane0` outputs into each panel:
// for each input in order, every accumulator takes one fused multiply-add, the chain that
// panel_matmul_reference computes with std::fma (the tests hold every path to it bit for bit).
template <typename V, typename E, int R, int C, int P>
inline void panel_tile(const MatrixView& x, const PanelMatrix& w, int64_t first_panel, int64_t lane0, float* out,
                       int64_t out_stride) {
  constexpr int64_t kLanes = kLanesOf<V>;
  V acc[P][C][R] = {};
  const E* base[P];
#pragma GCC unroll 2
  for (int p = 0; p < P; ++p) base[p] = panel_of<E>(w, first_panel + p) + lane0;
  const int64_t cols = w.cols();
  for (int64_t i = 0; i < cols; ++i) {
    V wv[P][C];
#pragma GCC unroll 2
    for (int p = 0; p < P; ++p) {
#pragma GCC unroll 6
      for (int c = 0; c < C; ++c) wv[p][c] = load_weights<V>(base[p] + i * kPanelWidth + c * kLanes);
      if (lane0 == 0) {
        const char* ahead = reinterpret_cast<const char*>(base[p] + (i + kPrefetchInputs) * kPanelWidth);
        __builtin_prefetch(ahead, 0, 3);
        __builtin_prefetch(ahead + 64, 0, 3);
        if constexpr (sizeof(E) == 4) __builtin_prefetch(ahead + 128, 0, 3);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      V xv;
      broadcast(x.data[r * x.row_stride + i], xv);
#pragma GCC unroll 2
      for (int p = 0; p < P; ++p) {
#pragma GCC unroll 6
        for (int c = 0; c < C; ++c) acc[p][c][r] = fused_multiply_add(wv[p][c], xv, acc[p][c][r]);
      }
    }
  }
  store_tile<V, R, C, P>(acc, w.rows(), first_panel, lane0, out, out_stride);
}

template <typename V, typename E, int R, int C, int P>
inline void panel_span(const SpanInput& in, const PanelMatrix& w, int64_t begin, int64_t end, float* out,
                       int64_t out_stride) {
  for_each_tile<V, C, P>(begin, end, [&](int64_t p, int64_t lane0, auto panels) {
    panel_tile<V, E, R, C, decltype(panels)::value>(in.x, w, p, lane0, out, out_stride);
  });
}

#if !defined(__clang__)
// acc + the two products of each lane's bfloat16 pair and x's pair: vdpbf16ps (AVX512_BF16).
__attribute__((target("avx512f,avx512bf16"))) inline Lanes16 dot_pairs(Lanes16 acc, Words16 w, uint32_t x_pair) {
  return _mm512_dpbf16_ps(acc, (__m512bh)w, (__m512bh)_mm512_set1_epi32(static_cast<int>(x_pair)));
}
#endif

// A kBfloat16Dot tile: for each pair of inputs in order, every accumulator takes the chain of the
// header (high halves first), on vdpbf16ps (kInstruction) or in fused multiply-adds.
template <typename V, int R, int C, int P, bool kInstruction>
inline void dot_tile(const OperandPairs& x, const PanelMatrix& w, int64_t first_panel, int64_t lane0, float* out,
                     int64_t out_stride) {
  constexpr int64_t kLanes = kLanesOf<V>;
  using Words = WordsOf<V>;
  V acc[P][C][R] = {};
  const uint32_t* base[P];
#pragma GCC unroll 2
  for (int p = 0; p < P; ++p) base[p] = w.panel_pairs(first_panel + p) + lane0;
  for (int64_t k = 0; k < x.pairs; ++k) {
    Words words[P][C];
    V high[P][C], low[P][C];
#pragma GCC unroll 2
    for (int p = 0; p < P; ++p) {
#pragma GCC unroll 6
      for (int c = 0; c < C; ++c) {
        __builtin_memcpy(&words[p][c], base[p] + k * kPanelWidth + c * kLanes, sizeof(Words));
        if constexpr (!kInstruction) {
          high[p][c] = same_bits<V>(words[p][c] & 0xffff0000u);
          low[p][c] = same_bits<V>(words[p][c] << 16);
        }
      }
      if (lane0 == 0) {
        const char* ahead = reinterpret_cast<const char*>(base[p] + (k + kPrefetchInputs) * kPanelWidth);
        __builtin_prefetch(ahead, 0, 3);
        __builtin_prefetch(ahead + 64, 0, 3);
        __builtin_prefetch(ahead + 128, 0, 3);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const uint32_t pair = x.data[r * x.pairs + k];
      if constexpr (kInstruction) {
#if !defined(__clang__)
#pragma GCC unroll 2
        for (int p = 0; p < P; ++p) {
#pragma GCC unroll 6
          for (int c = 0; c < C; ++c) acc[p][c][r] = dot_pairs(acc[p][c][r], words[p][c], pair);
        }
#endif
      } else {
        V x_high, x_low;
        broadcast(same_bits<float>(pair & 0xffff0000u), x_high);
        broadcast(same_bits<float>(pair << 16), x_low);
#pragma GCC unroll 2
        for (int p = 0; p < P; ++p) {
#pragma GCC unroll 6
          for (int c = 0; c < C; ++c) {
            acc[p][c][r] = flush_subnormals(fused_multiply_add(high[p][c], x_high, acc[p][c][r]));
            acc[p][c][r] = flush_subnormals(fused_multiply_add(low[p][c], x_low, acc[p][c][r]));
          }
        }
      }
    }
  }
  store_tile<V, R, C, P>(acc, w.rows(), first_panel, lane0, out, out_stride);
}

template <typename V, int R, int C, int P, bool kInstruction>
inline void dot_span(const SpanInput& in, const PanelMatrix& w, int64_t begin, int64_t end, float* out,
                     int64_t out_stride) {
  for_each_tile<V, C, P>(begin, end, [&](int64_t p, int64_t lane0, auto panels) {
    dot_tile<V, R, C, decltype(panels)::value, kInstruction>(in.pairs, w, p, lane0, out, out_stride);
  });
}

#endif

using PanelSpanFn = void (*)(const SpanInput&, const PanelMatrix&, int64_t, int64_t, float*, int64_t);

float flush_subnormal(float value) {
  return std::fpclassify(value) == FP_SUBNORMAL ? std::copysign(0.0f, value) : value;
}

// The reference's chains, output by output: the portable path.
void reference_span(const SpanInput& in, const PanelMatrix& w, int64_t begin, int64_t end, float* out,
                    int64_t out_stride) {
  const int64_t last = std::min(w.rows(), end * kPanelWidth);
  for (int64_t r = 0; r < in.x.rows; ++r) {
    const float* x_row = in.x.data + r * in.x.row_stride;
    for (int64_t o = begin * kPanelWidth; o < last; ++o) {
      float acc = 0.0f;
      if (w.type() == PanelType::kBfloat16Dot) {
        for (int64_t k = 0; 2 * k < w.cols(); ++k) {  // each pair's high half first, then its low half
          const bool has_high = 2 * k + 1 < w.cols();
          const float x_high = has_high ? bfloat16_to_float(bfloat16_dot_operand(x_row[2 * k + 1])) : 0.0f;
          const float w_high = has_high ? w.weight(o, 2 * k + 1) : 0.0f;
          acc = flush_subnormal(std::fma(w_high, x_high, acc));
          acc = flush_subnormal(std::fma(w.weight(o, 2 * k), bfloat16_to_float(bfloat16_dot_operand(x_row[2 * k])), acc));
        }
      } else {
        for (int64_t i = 0; i < w.cols(); ++i) acc = std::fma(x_row[i], w.weight(o, i), acc);
      }
      out[r * out_stride + o] = acc;
    }
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
#define NEXTN_PANEL_X86_PATHS 1
// AVX-512: a panel is three vectors; 8 rows keep 24 accumulators, 3 weights and a broadcast in the
// 32 registers. One row takes two panels at once: six chains hide the multiply-add's latency.
template <typename E, int R>
__attribute__((flatten, target("avx512f,avx2,fma"))) void span_avx512(const SpanInput& in, const PanelMatrix& w,
                                                                      int64_t begin, int64_t end, float* out,
                                                                      int64_t out_stride) {
  panel_span<Lanes16, E, R, 3, R == 1 ? 2 : 1>(in, w, begin, end, out, out_stride);
}

// AVX2: a panel is six vectors; passes of C of them keep R * C <= 12 accumulators in 16 registers.
template <typename E, int R>
__attribute__((flatten, target("avx2,fma"))) void span_avx2(const SpanInput& in, const PanelMatrix& w, int64_t begin,
                                                            int64_t end, float* out, int64_t out_stride) {
  panel_span<Lanes8, E, R, R <= 2 ? 6 : R <= 4 ? 3 : R <= 6 ? 2 : 1, 1>(in, w, begin, end, out, out_stride);
}

// kBfloat16Dot on vdpbf16ps: the float32 tiles' shapes, a pair of inputs per instruction.
#if !defined(__clang__)
template <int R>
__attribute__((flatten, target("avx512f,avx512bf16,avx2,fma"))) void dot_span_avx512_bf16(
    const SpanInput& in, const PanelMatrix& w, int64_t begin, int64_t end, float* out, int64_t out_stride) {
  dot_span<Lanes16, R, 3, R == 1 ? 2 : 1, true>(in, w, begin, end, out, out_stride);
}
#endif
// kBfloat16Dot in fused multiply-adds: each vector of pairs is two of weights (high and low halves),
// so passes are narrower than the float32 tiles' to keep them in registers.
template <int R>
__attribute__((flatten, target("avx512f,avx2,fma"))) void dot_span_avx512(const SpanInput& in, const PanelMatrix& w,
                                                                          int64_t begin, int64_t end, float* out,
                                                                          int64_t out_stride) {
  dot_span<Lanes16, R, R <= 6 ? 3 : 1, 1, false>(in, w, begin, end, out, out_stride);
}
template <int R>
__attribute__((flatten, target("avx2,fma"))) void dot_span_avx2(const SpanInput& in, const PanelMatrix& w,
                                                                int64_t begin, int64_t end, float* out,
                                                                int64_t out_stride) {
  dot_span<Lanes8, R, R <= 2 ? 3 : R <= 4 ? 2 : 1, 1, false>(in, w, begin, end, out, out_stride);
}
#else
#define NEXTN_PANEL_X86_PATHS 0
#endif

static_assert(kFewRowsMax == 8, "span_for's tables hold one entry per row count");

std::atomic<bool>& dot_instruction_allowed() {
  static std::atomic<bool> allowed{true};
  return allowed;
}

bool dot_instruction_available() {
#if NEXTN_PANEL_X86_PATHS && !defined(__clang__)
  static const bool available = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") != 0;
  }();
  return available;
#else
  return false;
#endif
}

#if NEXTN_PANEL_X86_PATHS
// One entry point per row count (1..8): the tile's row count is a template argument.
template <template <int> class Entry>
PanelSpanFn by_rows(int64_t rows) {
  static constexpr PanelSpanFn table[] = {Entry<1>::fn, Entry<2>::fn, Entry<3>::fn, Entry<4>::fn,
                                          Entry<5>::fn, Entry<6>::fn, Entry<7>::fn, Entry<8>::fn};
  return table[rows - 1];
}
template <typename E>
struct Avx512Of {
  template <int R>
  struct At {
    static constexpr PanelSpanFn fn = span_avx512<E, R>;
  };
};
template <typename E>
struct Avx2Of {
  template <int R>
  struct At {
    static constexpr PanelSpanFn fn = span_avx2<E, R>;
  };
};
template <int R>
struct DotAvx512 {
  static constexpr PanelSpanFn fn = dot_span_avx512<R>;
};
template <int R>
struct DotAvx2 {
  static constexpr PanelSpanFn fn = dot_span_avx2<R>;
};
#if !defined(__clang__)
template <int R>
struct DotAvx512Bf16 {
  static constexpr PanelSpanFn fn = dot_span_avx512_bf16<R>;
};
#endif

PanelSpanFn vector_span_for(int64_t rows, FewRowsPath path, PanelType type) {
  if (path == FewRowsPath::kAvx512) {
    switch (type) {
      case PanelType::kFloat32: return by_rows<Avx512Of<float>::At>(rows);
      case PanelType::kBfloat16: return by_rows<Avx512Of<uint16_t>::At>(rows);
      case PanelType::kBfloat16Dot:
#if !defined(__clang__)
        if (bfloat16_dot_instruction()) return by_rows<DotAvx512Bf16>(rows);
#endif
        return by_rows<DotAvx512>(rows);
    }
  }
  if (path == FewRowsPath::kAvx2Fma) {
    switch (type) {
      case PanelType::kFloat32: return by_rows<Avx2Of<float>::At>(rows);
      case PanelType::kBfloat16: return by_rows<Avx2Of<uint16_t>::At>(rows);
      case PanelType::kBfloat16Dot: return by_rows<DotAvx2>(rows);
    }
  }
  return reference_span;
}
#endif

PanelSpanFn span_for(int64_t rows, FewRowsPath path, PanelType type) {
#if NEXTN_PANEL_X86_PATHS
  return vector_span_for(rows, path, type);
#else
  (void)rows;
  (void)path;
  (void)type;
  return reference_span;
#endif
}

void check_shapes(const MatrixView& x, const PanelMatrix& w, const float* out) {
  if (x.rows < 1 || x.rows > kFewRowsMax) {
    throw std::invalid_argument("panel_matmul: " + std::to_string(x.rows) + " rows, expected 1 to " +
                                std::to_string(kFewRowsMax));
  }
  if (x.cols != w.cols()) {
    throw std::invalid_argument("panel_matmul: x has " + std::to_string(x.cols) + " columns, the weight " +
                                std::to_string(w.cols()));
  }
  if (x.data == nullptr || out == nullptr || x.row_stride < x.cols) {
    throw std::invalid_argument("panel_matmul: null data or a row stride shorter than a row");
  }
}

// The registry: matrices by (data, rows, cols, row stride).
using PanelKey = std::tuple<const float*, int64_t, int64_t, int64_t>;
PanelKey key_of(const MatrixView& w) { return {w.data, w.rows, w.cols, w.row_stride}; }

// A registered copy and how many registrants hold it (two DecodingPanels of one model share it).
struct Registration {
  std::shared_ptr<const PanelMatrix> panels;
  int holders = 0;
};

struct Registry {
  std::shared_mutex mutex;
  std::map<PanelKey, Registration> entries;
  std::atomic<int64_t> count{0};  // lets unregistered products skip the lock
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

void PanelMatrix::FreeAligned::operator()(unsigned char* p) const { std::free(p); }

int64_t PanelMatrix::bytes_for(int64_t rows, int64_t cols, PanelType type) {
  const int64_t stored_cols = type == PanelType::kBfloat16Dot ? (cols + 1) / 2 * 2 : cols;  // whole pairs
  const int64_t elements = std::max<int64_t>(1, (rows + kPanelWidth - 1) / kPanelWidth * stored_cols * kPanelWidth);
  const int64_t element_bytes = type == PanelType::kFloat32 ? 4 : 2;
  return (elements * element_bytes + 63) / 64 * 64;
}

uint16_t round_to_bfloat16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if (std::isnan(value)) return 0x7fc0;  // a quiet NaN, as torch's conversion gives
  bits += 0x7fff + ((bits >> 16) & 1);  // round to nearest, ties to even
  return static_cast<uint16_t>(bits >> 16);
}

uint16_t bfloat16_dot_operand(float value) {
  const uint16_t bits = round_to_bfloat16(value);
  return (bits & 0x7f80u) == 0 ? static_cast<uint16_t>(bits & 0x8000u) : bits;  // subnormal: a zero of its sign
}

float bfloat16_to_float(uint16_t bf16) {
  const uint32_t bits = static_cast<uint32_t>(bf16) << 16;
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

PanelMatrix::PanelMatrix(const MatrixView& w, PanelType type) : rows_(w.rows), cols_(w.cols), type_(type) {
  if (w.rows < 0 || w.cols < 0 || (w.rows > 0 && (w.data == nullptr || w.row_stride < w.cols))) {
    throw std::invalid_argument("PanelMatrix: null data or a row stride shorter than a row");
  }
  const size_t bytes = static_cast<size_t>(bytes_for(rows_, cols_, type_));
  data_.reset(static_cast<unsigned char*>(std::aligned_alloc(64, bytes)));
  if (!data_) throw std::bad_alloc();
  std::memset(data_.get(), 0, bytes);  // padding outputs: zero weights
  for (int64_t o = 0; o < rows_; ++o) {
    const int64_t first = (o / kPanelWidth) * cols_ * kPanelWidth + o % kPanelWidth;
    const float* row = w.data + o * w.row_stride;
    if (type_ == PanelType::kBfloat16Dot) {
      uint32_t* words = const_cast<uint32_t*>(panel_pairs(o / kPanelWidth)) + o % kPanelWidth;
      for (int64_t k = 0; k < pair_count(); ++k) {
        const uint32_t low = bfloat16_dot_operand(row[2 * k]);
        const uint32_t high = 2 * k + 1 < cols_ ? bfloat16_dot_operand(row[2 * k + 1]) : 0u;
        words[k * kPanelWidth] = low | high << 16;
      }
    } else if (type_ == PanelType::kBfloat16) {
      uint16_t* column = reinterpret_cast<uint16_t*>(data_.get()) + first;
      for (int64_t i = 0; i < cols_; ++i) column[i * kPanelWidth] = round_to_bfloat16(row[i]);
    } else {
      float* column = reinterpret_cast<float*>(data_.get()) + first;
      for (int64_t i = 0; i < cols_; ++i) column[i * kPanelWidth] = row[i];
    }
  }
}

bool holds_bfloat16_exactly(const MatrixView& w) {
  for (int64_t o = 0; o < w.rows; ++o) {
    const float* row = w.data + o * w.row_stride;
    for (int64_t i = 0; i < w.cols; ++i) {
      uint32_t bits;
      std::memcpy(&bits, &row[i], sizeof(bits));
      if ((bits & 0xffffu) != 0) return false;  // NaN payloads below the upper half included
    }
  }
  return true;
}

float PanelMatrix::weight(int64_t row, int64_t col) const {
  if (type_ == PanelType::kBfloat16Dot) {
    const uint32_t word = panel_pairs(row / kPanelWidth)[(col / 2) * kPanelWidth + row % kPanelWidth];
    return bfloat16_to_float(static_cast<uint16_t>(col % 2 == 1 ? word >> 16 : word & 0xffffu));
  }
  const int64_t at = col * kPanelWidth + row % kPanelWidth;
  if (type_ == PanelType::kBfloat16) return bfloat16_to_float(panel_bf16(row / kPanelWidth)[at]);
  return panel(row / kPanelWidth)[at];
}

bool panel_matmul_vectorised() {
#if NEXTN_PANEL_X86_PATHS
  return few_rows_matmul_path() != FewRowsPath::kPortable;
#else
  return false;
#endif
}

namespace {

// x's operand pairs for a kBfloat16Dot copy, in a buffer of the calling thread's (the helpers
// only read it while the call lasts).
OperandPairs operand_pairs(const MatrixView& x) {
  thread_local std::vector<uint32_t> buffer;
  const int64_t pairs = (x.cols + 1) / 2;
  buffer.resize(static_cast<size_t>(x.rows * pairs));
  for (int64_t r = 0; r < x.rows; ++r) {
    const float* row = x.data + r * x.row_stride;
    for (int64_t k = 0; k < pairs; ++k) {
      const uint32_t low = bfloat16_dot_operand(row[2 * k]);
      const uint32_t high = 2 * k + 1 < x.cols ? bfloat16_dot_operand(row[2 * k + 1]) : 0u;
      buffer[static_cast<size_t>(r * pairs + k)] = low | high << 16;
    }
  }
  return {buffer.data(), pairs};
}

}  // namespace

void panel_matmul(const MatrixView& x, const PanelMatrix& w, float* out, int64_t out_row_stride) {
  check_shapes(x, w, out);
  if (w.rows() == 0) return;
  const PanelSpanFn span = span_for(x.rows, few_rows_matmul_path(), w.type());
  const SpanInput in{x, w.type() == PanelType::kBfloat16Dot ? operand_pairs(x) : OperandPairs{}};
  const int64_t panels = w.panels();
  const int threads = static_cast<int>(std::min<int64_t>(few_rows_threads_for(x.rows * w.rows() * w.cols()), panels));
  if (threads <= 1) {
    span(in, w, 0, panels, out, out_row_stride);
    return;
  }
  // Blocks of panels from a shared counter, as few_rows_matmul does: a helper that gets its core
  // late costs only the blocks it did not take. Who computes an output does not change its bits.
  const int64_t block = std::max<int64_t>(1, panels / (4 * threads));
  std::atomic<int64_t> next{0};
  run_in_parts(threads, [&](int) {
    for (int64_t begin = next.fetch_add(block); begin < panels; begin = next.fetch_add(block)) {
      span(in, w, begin, std::min(panels, begin + block), out, out_row_stride);
    }
  });
}

void panel_matmul_reference(const MatrixView& x, const PanelMatrix& w, float* out, int64_t out_row_stride) {
  check_shapes(x, w, out);
  reference_span({x, {}}, w, 0, w.panels(), out, out_row_stride);
}

bool bfloat16_dot_instruction() {
  return dot_instruction_allowed().load(std::memory_order_relaxed) && dot_instruction_available() &&
         few_rows_matmul_path() == FewRowsPath::kAvx512;
}

void allow_bfloat16_dot_instruction(bool allowed) { dot_instruction_allowed().store(allowed); }

void register_panels(const MatrixView& w, PanelType type) {
  Registry& r = registry();
  const auto hold = [&](Registration& entry) {
    if (entry.panels->type() != type) {
      throw std::invalid_argument("register_panels: the matrix is registered already, as panels of another type");
    }
    ++entry.holders;
  };
  {
    std::unique_lock lock(r.mutex);
    auto found = r.entries.find(key_of(w));
    if (found != r.entries.end()) return hold(found->second);
  }
  auto packed = std::make_shared<const PanelMatrix>(w, type);  // outside the lock: packing takes a while
  std::unique_lock lock(r.mutex);
  Registration& entry = r.entries[key_of(w)];
  if (!entry.panels) entry.panels = std::move(packed);
  hold(entry);
  r.count.store(static_cast<int64_t>(r.entries.size()));
}

void unregister_panels(const MatrixView& w) {
  Registry& r = registry();
  std::unique_lock lock(r.mutex);
  auto found = r.entries.find(key_of(w));
  if (found == r.entries.end()) return;
  if (--found->second.holders == 0) r.entries.erase(found);  // a product still running keeps its copy
  r.count.store(static_cast<int64_t>(r.entries.size()));
}

std::shared_ptr<const PanelMatrix> registered_panels(const MatrixView& w) {
  Registry& r = registry();
  if (r.count.load(std::memory_order_relaxed) == 0) return nullptr;
  std::shared_lock lock(r.mutex);
  const auto found = r.entries.find(key_of(w));
  return found == r.entries.end() ? nullptr : found->second.panels;
}

int64_t registered_panel_count() { return registry().count.load(); }

}  // namespace nextn::kernels
