#include "nextn/kernels/few_rows_matmul.h"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>

#include "nextn/kernels/worker_pool.h"

namespace nextn::kernels {
namespace {

// Eight float lanes as a GCC/Clang vector: plain arithmetic on it compiles to one AVX register
// inside the AVX2 entry point below and to pairs of SSE/NEON registers in the portable one.
// This file is compiled with -ffp-contract=fast, so `acc += w * x` becomes an FMA where there is one.
using Lanes = float __attribute__((vector_size(32)));
constexpr int64_t kLanes = 8;

inline Lanes load_lanes(const float* p) {
  Lanes v;
  __builtin_memcpy(&v, p, sizeof(v));  // unaligned load
  return v;
}

// The lanes' sum, halving the vector twice (fewer dependent adds than a loop over the lanes).
inline float sum_lanes(Lanes v) {
  using Half = float __attribute__((vector_size(16)));
  Half low, high;  // the two halves (memcpy: any GCC or Clang; compiles to one extract)
  __builtin_memcpy(&low, &v, sizeof(low));
  __builtin_memcpy(&high, reinterpret_cast<const char*>(&v) + sizeof(low), sizeof(high));
  const Half h = low + high;
  return (h[0] + h[2]) + (h[1] + h[3]);
}

// O consecutive outputs for all R rows: each weight element is loaded once and multiplied by the
// R rows' inputs; O * R accumulators stay in registers (at most 8 of AVX2's 16).
template <int R, int O>
inline void tile(const MatrixView& x, const MatrixView& w, int64_t o, float* out, int64_t out_stride) {
  Lanes acc[O][R] = {};
  const int64_t n = x.cols;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    Lanes wv[O];
#pragma GCC unroll 8
    for (int k = 0; k < O; ++k) wv[k] = load_lanes(w.data + (o + k) * w.row_stride + i);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Lanes xv = load_lanes(x.data + r * x.row_stride + i);
#pragma GCC unroll 8
      for (int k = 0; k < O; ++k) acc[k][r] += wv[k] * xv;
    }
  }
  for (int k = 0; k < O; ++k) {
    const float* w_row = w.data + (o + k) * w.row_stride;
    for (int r = 0; r < R; ++r) {
      const float* x_row = x.data + r * x.row_stride;
      float s = sum_lanes(acc[k][r]);
      for (int64_t j = i; j < n; ++j) s += w_row[j] * x_row[j];
      out[r * out_stride + o + k] = s;
    }
  }
}

// Outputs [begin, end) in tiles of O outputs: 8 for one row (eight weight rows streamed at once
// keep enough loads in flight when the weights come from memory), 4 for two, 2 for three or four.
template <int R>
inline void output_span(const MatrixView& x, const MatrixView& w, int64_t begin, int64_t end, float* out,
                        int64_t out_stride) {
  constexpr int O = R == 1 ? 8 : R == 2 ? 4 : 2;
  int64_t o = begin;
  for (; o + O <= end; o += O) tile<R, O>(x, w, o, out, out_stride);
  for (; o < end; ++o) tile<R, 1>(x, w, o, out, out_stride);
}

using SpanFn = void (*)(const MatrixView&, const MatrixView&, int64_t, int64_t, float*, int64_t);

// One entry point per row count and instruction set; `flatten` inlines the tiles so that their
// vector arithmetic is compiled for the entry point's target.
template <int R>
__attribute__((flatten)) void span_portable(const MatrixView& x, const MatrixView& w, int64_t begin, int64_t end,
                                            float* out, int64_t out_stride) {
  output_span<R>(x, w, begin, end, out, out_stride);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define NEXTN_HAVE_AVX2_PATH 1
template <int R>
__attribute__((flatten, target("avx2,fma"))) void span_avx2(const MatrixView& x, const MatrixView& w, int64_t begin,
                                                            int64_t end, float* out, int64_t out_stride) {
  output_span<R>(x, w, begin, end, out, out_stride);
}
#else
#define NEXTN_HAVE_AVX2_PATH 0
#endif

bool cpu_has_avx2_fma() {
#if NEXTN_HAVE_AVX2_PATH
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

std::atomic<FewRowsPath>& chosen_path() {
  static std::atomic<FewRowsPath> path{cpu_has_avx2_fma() ? FewRowsPath::kAvx2Fma : FewRowsPath::kPortable};
  return path;
}

std::atomic<int>& configured_threads() {
  static std::atomic<int> threads{0};
  return threads;
}

SpanFn span_for(int64_t rows, FewRowsPath path) {
#if NEXTN_HAVE_AVX2_PATH
  if (path == FewRowsPath::kAvx2Fma) {
    static constexpr SpanFn avx2[] = {span_avx2<1>, span_avx2<2>, span_avx2<3>, span_avx2<4>};
    return avx2[rows - 1];
  }
#endif
  static constexpr SpanFn portable[] = {span_portable<1>, span_portable<2>, span_portable<3>, span_portable<4>};
  return portable[rows - 1];
}

// Below about this many multiply-adds per thread, handing part of a product to a helper thread
// costs more than it saves (2-core EPYC: a 256x768 weight times one row takes 7 us on one thread).
constexpr int64_t kMinWorkPerThread = 150000;

int threads_for(int64_t work) {
  const int64_t worth = std::max<int64_t>(1, work / kMinWorkPerThread);
  return static_cast<int>(std::min<int64_t>(few_rows_matmul_threads(), worth));
}

void check_shapes(const MatrixView& x, const MatrixView& w, const float* out) {
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

}  // namespace

void few_rows_matmul(const MatrixView& x, const MatrixView& w, float* out, int64_t out_row_stride) {
  check_shapes(x, w, out);
  if (w.rows == 0) return;
  const SpanFn span = span_for(x.rows, few_rows_matmul_path());
  const int threads = threads_for(x.rows * w.rows * w.cols);
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

void few_rows_matmul_reference(const MatrixView& x, const MatrixView& w, float* out, int64_t out_row_stride) {
  check_shapes(x, w, out);
  for (int64_t r = 0; r < x.rows; ++r) {
    for (int64_t o = 0; o < w.rows; ++o) {
      double sum = 0;
      for (int64_t i = 0; i < x.cols; ++i) {
        sum += static_cast<double>(x.data[r * x.row_stride + i]) * w.data[o * w.row_stride + i];
      }
      out[r * out_row_stride + o] = static_cast<float>(sum);
    }
  }
}

FewRowsPath few_rows_matmul_path() { return chosen_path().load(std::memory_order_relaxed); }

bool few_rows_matmul_has_avx2_fma() { return cpu_has_avx2_fma(); }

void force_few_rows_matmul_path(FewRowsPath path) {
  if (path == FewRowsPath::kAvx2Fma && !cpu_has_avx2_fma()) {
    throw std::invalid_argument("few_rows_matmul: this CPU or build has no AVX2 + FMA path");
  }
  chosen_path().store(path, std::memory_order_relaxed);
}

void set_few_rows_matmul_threads(int threads) { configured_threads().store(std::max(0, threads)); }

int few_rows_matmul_threads() {
  const int threads = configured_threads().load(std::memory_order_relaxed);
  if (threads > 0) return threads;
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace nextn::kernels
