#include "nextn/kernels/few_rows_matmul.h"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>

#include "nextn/kernels/float_lanes.h"
#include "nextn/kernels/panel_matmul.h"
#include "nextn/kernels/worker_pool.h"

namespace nextn::kernels {
namespace {

// Vector arithmetic on float_lanes.h's lanes; this file is compiled with -ffp-contract=fast, so
// `acc += w * x` becomes an FMA where there is one.
constexpr int64_t kCacheLineBytes = 64;

// The lanes' sum, halving the vector until four lanes are left (fewer dependent adds than a loop
// over the lanes). The halves are taken with memcpy (any GCC or Clang; compiles to one extract).
inline float sum_lanes(Lanes4 v) { return (v[0] + v[2]) + (v[1] + v[3]); }

template <typename Half, typename V>
inline Half add_halves(V v) {
  Half low, high;
  __builtin_memcpy(&low, &v, sizeof(low));
  __builtin_memcpy(&high, reinterpret_cast<const char*>(&v) + sizeof(low), sizeof(high));
  return low + high;
}

inline float sum_lanes(Lanes8 v) { return sum_lanes(add_halves<Lanes4>(v)); }
inline float sum_lanes(Lanes16 v) { return sum_lanes(add_halves<Lanes8>(v)); }

#if defined(__GNUC__) && !defined(__clang__)
// The lane sums of O vectors at once, out[k] = sum_lanes(v[k]) bit for bit. sum_lanes costs about
// eight instructions per vector, a third of a 256-column output's work; folding the vectors into
// each other (a transpose as it adds) costs three instructions per pair and level.
//
// A level takes vectors whose lanes are segments of S partial sums, one segment per output, and
// adds lane i of each segment to lane i + S/2, as sum_lanes halves its vector: fold(a, b) holds
// a's outputs then b's, in segments of S/2. A lone vector folds with itself (its outputs twice).
using Index8 = int32_t __attribute__((vector_size(32)));
using Index16 = int32_t __attribute__((vector_size(64)));
template <typename V>
using LaneIndex = std::conditional_t<sizeof(V) == 64, Index16, Index8>;

template <typename V, int S>
inline V fold_segments(V a, V b) {
  constexpr int kWidth = static_cast<int>(kLanesOf<V>);
  constexpr int kOutputsPerInput = kWidth / S;
  LaneIndex<V> low, high;
  for (int lane = 0; lane < kWidth; ++lane) {
    const int segment = lane / (S / 2), i = lane % (S / 2);
    const int base = segment < kOutputsPerInput ? segment * S : kWidth + (segment - kOutputsPerInput) * S;
    low[lane] = base + i;
    high[lane] = base + i + S / 2;
  }
  return __builtin_shuffle(a, b, low) + __builtin_shuffle(a, b, high);
}

template <typename V, int S, int Count>
inline void fold_to_single_lanes(V* v) {
  if constexpr (S > 1) {
    if constexpr (Count >= 2) {
#pragma GCC unroll 8
      for (int p = 0; p < Count / 2; ++p) v[p] = fold_segments<V, S>(v[2 * p], v[2 * p + 1]);
      fold_to_single_lanes<V, S / 2, Count / 2>(v);
    } else {
      v[0] = fold_segments<V, S>(v[0], v[0]);
      fold_to_single_lanes<V, S / 2, 1>(v);
    }
  }
}

template <typename V, int O>
inline void sum_lanes_of(V (&v)[O], float* out) {
  static_assert((O & (O - 1)) == 0 && O <= kLanesOf<V>, "a power of two of outputs, at most one per lane");
  fold_to_single_lanes<V, static_cast<int>(kLanesOf<V>), O>(v);
  __builtin_memcpy(out, &v[0], O * sizeof(float));  // lanes 0..O-1: the outputs in order
}
#else
template <typename V, int O>
inline void sum_lanes_of(V (&v)[O], float* out) {
  for (int k = 0; k < O; ++k) out[k] = sum_lanes(v[k]);
}
#endif

// Weight lanes: float32 weights load as they are; bfloat16 weights load half as many bytes and
// widen to float32 by a shift into the upper half (exact).
using Bf16Lanes8 = uint16_t __attribute__((vector_size(16)));
using Bf16Lanes16 = uint16_t __attribute__((vector_size(32)));
using Bits8 = uint32_t __attribute__((vector_size(32)));
using Bits16 = uint32_t __attribute__((vector_size(64)));

template <typename V>
struct Bf16LanesOf;
template <>
struct Bf16LanesOf<Lanes8> {
  using Narrow = Bf16Lanes8;
  using Bits = Bits8;
};
template <>
struct Bf16LanesOf<Lanes16> {
  using Narrow = Bf16Lanes16;
  using Bits = Bits16;
};

template <typename V>
inline V load_weights(const float* p) {
  return load_lanes<V>(p);
}

template <typename V>
inline V load_weights(const uint16_t* p) {
  typename Bf16LanesOf<V>::Narrow narrow;
  __builtin_memcpy(&narrow, p, sizeof(narrow));
  const auto bits = __builtin_convertvector(narrow, typename Bf16LanesOf<V>::Bits) << 16;
  V v;
  __builtin_memcpy(&v, &bits, sizeof(v));
  return v;
}

inline float weight_value(float w) { return w; }
inline float weight_value(uint16_t w) { return bf16_to_float(w); }

// The element type of a weight view (float or uint16_t).
template <typename WView>
using WeightOf = std::remove_cv_t<std::remove_pointer_t<decltype(WView::data)>>;

constexpr int power_of_two_at_least(int n) { return n <= 1 ? 1 : 2 * power_of_two_at_least((n + 1) / 2); }

// Outputs per tile for R rows: O * R accumulators plus O weight vectors stay in registers (AVX2
// has 16, AVX-512 32). One row streams 8 weight rows at once, enough loads in flight when the
// weights come from memory.
template <typename V, int R>
constexpr int kTileOutputs = sizeof(V) == 64 ? (R <= 2 ? 8 : R <= 4 ? 4 : 2)
                                             : (R == 1 ? 8 : R == 2 ? 4 : R <= 4 ? 2 : 1);

// O consecutive outputs for all R rows: each weight element is loaded once and multiplied by the
// R rows' inputs. While it works, the tile prefetches the same columns of the next tile's weight
// rows, one cache line per row and step: decoding's weights are mostly cold (each matrix is used
// once per step), and rows of a few KB are too short for the hardware prefetcher to ramp up on
// each of them. Without it two rows cost 1.5-2x one row on weights from memory; with it ~1.1x.
template <typename V, int R, int O, bool kVectorRegisters, typename WView>
inline void tile(const MatrixView& x, const WView& w, int64_t o, bool prefetch_next, float* out,
                 int64_t out_stride) {
  constexpr int64_t kLanes = kLanesOf<V>;
  constexpr int64_t kWeightsPerCacheLine = kCacheLineBytes / sizeof(WeightOf<WView>);
  V acc[O][R] = {};
  const int64_t n = x.cols;
  // Row k's weights at column i, and the next tile's row k at the same column: one index (i, or
  // i + ahead) on eight fixed row pointers, so that the addresses stay in registers.
  const WeightOf<WView>* rows[O];
#pragma GCC unroll 8
  for (int k = 0; k < O; ++k) rows[k] = w.data + (o + k) * w.row_stride;
  const int64_t ahead = O * w.row_stride;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    V wv[O];
#pragma GCC unroll 8
    for (int k = 0; k < O; ++k) wv[k] = load_weights<V>(rows[k] + i);
    if (prefetch_next && i % kWeightsPerCacheLine == 0) {
      const int64_t next = i + ahead;
#pragma GCC unroll 8
      for (int k = 0; k < O; ++k) __builtin_prefetch(rows[k] + next, 0, 3);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      V xv = load_lanes<V>(x.data + r * x.row_stride + i);
      // Tiles of two outputs: keep the row's lanes in a register. GCC otherwise folds this load
      // into both multiply-adds as a memory operand (AVX-512, 8 rows: 18 loads per 16
      // multiply-adds instead of 10, 1.25-1.5x the time for 5-8 rows on Zen 4; AVX2, 3-4 rows:
      // 1.1-1.3x). With four outputs or more, or one, the folded form measured as fast or faster.
#if defined(__GNUC__) && !defined(__clang__)  // the folding is GCC's; Clang checks the constraint against
                                              // the file's baseline instruction set and refuses it
      if constexpr (kVectorRegisters && O == 2) __asm__("" : "+v"(xv));
#endif
#pragma GCC unroll 8
      for (int k = 0; k < O; ++k) acc[k][r] += wv[k] * xv;
    }
  }
  // The tile's R * O lane sums in one fold (they fit one vector's lanes; unused slots are zero
  // vectors), bit for bit the per-row sums: fewer shuffles than a fold per row, and GCC keeps the
  // accumulators in registers (per row, it zeroed and spilled them on the stack for every tile).
  constexpr int kSums = power_of_two_at_least(R * O);
  static_assert(kSums <= kLanesOf<V>, "a tile's sums fit one vector");
  V all[kSums];
#pragma GCC unroll 16
  for (int s = 0; s < kSums; ++s) all[s] = s < R * O ? acc[s % O][s / O] : V{};
  float sums[kSums];
  sum_lanes_of(all, sums);
  for (int r = 0; r < R; ++r) {
    const float* x_row = x.data + r * x.row_stride;
    for (int k = 0; k < O; ++k) {
      float s = sums[r * O + k];
      for (int64_t j = i; j < n; ++j) s += weight_value(rows[k][j]) * x_row[j];
      out[r * out_stride + o + k] = s;
    }
  }
}

// Outputs [begin, end) in tiles; a tile prefetches only a next tile that lies inside the span.
// kVectorRegisters: V fits one register of the entry point's instruction set (AVX2, AVX-512).
template <typename V, int R, bool kVectorRegisters, typename WView>
inline void output_span(const MatrixView& x, const WView& w, int64_t begin, int64_t end, float* out,
                        int64_t out_stride) {
  constexpr int O = kTileOutputs<V, R>;
  int64_t o = begin;
  for (; o + O <= end; o += O) tile<V, R, O, kVectorRegisters>(x, w, o, o + 2 * O <= end, out, out_stride);
  for (; o < end; ++o) tile<V, R, 1, kVectorRegisters>(x, w, o, false, out, out_stride);
}

template <typename WView>
using SpanFn = void (*)(const MatrixView&, const WView&, int64_t, int64_t, float*, int64_t);

// One entry point per row count, weight type and instruction set; `flatten` inlines the tiles so
// that their vector arithmetic is compiled for the entry point's target.
template <int R, typename WView>
__attribute__((flatten)) void span_portable(const MatrixView& x, const WView& w, int64_t begin, int64_t end,
                                            float* out, int64_t out_stride) {
  output_span<Lanes8, R, false>(x, w, begin, end, out, out_stride);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define NEXTN_HAVE_X86_PATHS 1
template <int R, typename WView>
__attribute__((flatten, target("avx2,fma"))) void span_avx2(const MatrixView& x, const WView& w, int64_t begin,
                                                            int64_t end, float* out, int64_t out_stride) {
  output_span<Lanes8, R, true>(x, w, begin, end, out, out_stride);
}

template <int R, typename WView>
__attribute__((flatten, target("avx512f,avx2,fma"))) void span_avx512(const MatrixView& x, const WView& w,
                                                                      int64_t begin, int64_t end, float* out,
                                                                      int64_t out_stride) {
  output_span<Lanes16, R, true>(x, w, begin, end, out, out_stride);
}
#else
#define NEXTN_HAVE_X86_PATHS 0
#endif

bool cpu_has(FewRowsPath path) {
#if NEXTN_HAVE_X86_PATHS
  switch (path) {
    case FewRowsPath::kAvx512: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
    case FewRowsPath::kAvx2Fma: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case FewRowsPath::kPortable: return true;
  }
  return false;
#else
  return path == FewRowsPath::kPortable;
#endif
}

FewRowsPath best_path() {
  for (FewRowsPath path : {FewRowsPath::kAvx512, FewRowsPath::kAvx2Fma}) {
    if (cpu_has(path)) return path;
  }
  return FewRowsPath::kPortable;
}

std::atomic<FewRowsPath>& chosen_path() {
  static std::atomic<FewRowsPath> path{best_path()};
  return path;
}

std::atomic<int>& configured_threads() {
  static std::atomic<int> threads{0};
  return threads;
}

template <typename WView>
SpanFn<WView> span_for(int64_t rows, FewRowsPath path) {
#if NEXTN_HAVE_X86_PATHS
  if (path == FewRowsPath::kAvx512) {
    static constexpr SpanFn<WView> avx512[] = {span_avx512<1, WView>, span_avx512<2, WView>, span_avx512<3, WView>,
                                               span_avx512<4, WView>, span_avx512<5, WView>, span_avx512<6, WView>,
                                               span_avx512<7, WView>, span_avx512<8, WView>};
    return avx512[rows - 1];
  }
  if (path == FewRowsPath::kAvx2Fma) {
    static constexpr SpanFn<WView> avx2[] = {span_avx2<1, WView>, span_avx2<2, WView>, span_avx2<3, WView>,
                                             span_avx2<4, WView>, span_avx2<5, WView>, span_avx2<6, WView>,
                                             span_avx2<7, WView>, span_avx2<8, WView>};
    return avx2[rows - 1];
  }
#endif
  static constexpr SpanFn<WView> portable[] = {span_portable<1, WView>, span_portable<2, WView>,
                                               span_portable<3, WView>, span_portable<4, WView>,
                                               span_portable<5, WView>, span_portable<6, WView>,
                                               span_portable<7, WView>, span_portable<8, WView>};
  return portable[rows - 1];
}

// Below about this many multiply-adds per thread, handing part of a product to a helper thread
// costs more than it saves (2-core EPYC: a 256x768 weight times one row takes 7 us on one thread).
constexpr int64_t kMinWorkPerThread = 150000;

template <typename WView>
void check_shapes(const MatrixView& x, const WView& w, const float* out) {
  if (x.rows < 1 || x.rows > kFewRowsMax) {
    throw std::invalid_argument("few_rows_matmul: " + std::to_string(x.rows) + " rows, expected 1 to " +
                                std::to_string(kFewRowsMax));
  }
  if (x.cols != w.cols) {
    throw std::invalid_argument("few_rows_matmul: x has " + std::to_string(x.cols) + " columns, the weight " +
                                std::to_string(w.cols));
  }
  if (x.data == nullptr || w.data == nullptr || out == nullptr || x.row_stride < x.cols ||
      w.row_stride < w.cols) {
    throw std::invalid_argument("few_rows_matmul: null data or a row stride shorter than a row");
  }
}

template <typename WView>
void run_product(const MatrixView& x, const WView& w, float* out, int64_t out_row_stride) {
  check_shapes(x, w, out);
  if (w.rows == 0) return;
  const SpanFn<WView> span = span_for<WView>(x.rows, few_rows_matmul_path());
  const int threads = few_rows_threads_for(x.rows * w.rows * w.cols);
  if (threads <= 1) {
    span(x, w, 0, w.rows, out, out_row_stride);
    return;
  }
  // Threads take blocks of outputs (about 8 per thread, whole tiles) from a shared counter until
  // none are left: a helper that gets its core late (BLAS's threads poll on the same cores) costs
  // only the blocks it did not take, not a wait for its fixed share. Each output is computed the
  // same way whoever computes it, so results do not depend on the thread count.
  const int64_t block = std::max<int64_t>(8, (w.rows + 8 * threads - 1) / (8 * threads) + 7) / 8 * 8;
  std::atomic<int64_t> next_block{0};
  run_in_parts(threads, [&](int) {
    for (int64_t begin = next_block.fetch_add(block); begin < w.rows; begin = next_block.fetch_add(block)) {
      span(x, w, begin, std::min(w.rows, begin + block), out, out_row_stride);
    }
  });
}

template <typename WView>
void run_reference(const MatrixView& x, const WView& w, float* out, int64_t out_row_stride) {
  check_shapes(x, w, out);
  for (int64_t r = 0; r < x.rows; ++r) {
    for (int64_t o = 0; o < w.rows; ++o) {
      double sum = 0;
      for (int64_t i = 0; i < x.cols; ++i) {
        sum += static_cast<double>(x.data[r * x.row_stride + i]) * weight_value(w.data[o * w.row_stride + i]);
      }
      out[r * out_row_stride + o] = static_cast<float>(sum);
    }
  }
}

}  // namespace

void few_rows_matmul(const MatrixView& x, const MatrixView& w, float* out, int64_t out_row_stride) {
  if (const auto panels = registered_panels(w)) {  // decoding's copy (panel_matmul.h)
    panel_matmul(x, *panels, out, out_row_stride);
    return;
  }
  run_product(x, w, out, out_row_stride);
}

void few_rows_matmul(const MatrixView& x, const Bf16MatrixView& w, float* out, int64_t out_row_stride) {
  run_product(x, w, out, out_row_stride);
}

void few_rows_matmul_reference(const MatrixView& x, const MatrixView& w, float* out, int64_t out_row_stride) {
  run_reference(x, w, out, out_row_stride);
}

void few_rows_matmul_reference(const MatrixView& x, const Bf16MatrixView& w, float* out, int64_t out_row_stride) {
  run_reference(x, w, out, out_row_stride);
}

FewRowsPath few_rows_matmul_path() { return chosen_path().load(std::memory_order_relaxed); }

bool few_rows_matmul_path_available(FewRowsPath path) { return cpu_has(path); }

const char* few_rows_matmul_path_name(FewRowsPath path) {
  switch (path) {
    case FewRowsPath::kAvx512: return "AVX-512";
    case FewRowsPath::kAvx2Fma: return "AVX2+FMA";
    case FewRowsPath::kPortable: return "portable";
  }
  return "unknown";
}

void force_few_rows_matmul_path(FewRowsPath path) {
  if (!cpu_has(path)) {
    throw std::invalid_argument(std::string("few_rows_matmul: this CPU or build has no ") +
                                few_rows_matmul_path_name(path) + " path");
  }
  chosen_path().store(path, std::memory_order_relaxed);
}

void set_few_rows_matmul_threads(int threads) { configured_threads().store(std::max(0, threads)); }

int few_rows_threads_for(int64_t multiply_adds) {
  const int64_t worth = std::max<int64_t>(1, multiply_adds / kMinWorkPerThread);
  return static_cast<int>(std::min<int64_t>(few_rows_matmul_threads(), worth));
}

int few_rows_matmul_threads() {
  const int threads = configured_threads().load(std::memory_order_relaxed);
  if (threads > 0) return threads;
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace nextn::kernels
