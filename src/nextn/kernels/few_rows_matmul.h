// y = x W^T for decoding's few rows (1 to kFewRowsMax), reading each weight row once for all of
// them. A speculative verify of N + 1 tokens then moves about the same weight bytes as a plain
// step of one token: BLAS offers one sgemv per row (the weights read N + 1 times) or an sgemm that
// packs the whole weight on every call (3-6x slower than sgemv at these sizes).
//
// Plain C++ on raw float32 rows, no libtorch: fast to compile and to test against the naive loop
// (few_rows_matmul_reference) that it must match to rounding.
#pragma once

#include <cstdint>

namespace nextn::kernels {

// Up to 8 rows: speculative verifies take 2-4, a server's batched decoding step (continuous
// batching) up to 8 per call, so that 8 sequences read each weight once.
constexpr int64_t kFewRowsMax = 8;

// A row-major float32 matrix: row i starts at data + i * row_stride; columns are contiguous.
struct MatrixView {
  const float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;
};

// The same with bfloat16 weights (the upper 16 bits of a float32, as torch::kBFloat16 stores
// them): half the bytes to read, each widened to float32 exactly and multiplied in float32. For
// weights whose every use can take a rounded copy, such as a speculative drafter's output head
// (any draft distribution keeps speculative decoding exact).
struct Bf16MatrixView {
  const uint16_t* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;
};

// out[r * out_row_stride + o] = sum_i x[r][i] * w[o][i] for r < x.rows, o < w.rows.
// Requires 1 <= x.rows <= kFewRowsMax and x.cols == w.cols (checked: std::invalid_argument).
// Uses AVX-512 or AVX2 + FMA where the CPU has them (checked at run time), portable code
// otherwise, and several threads when the product is large enough to pay for them.
void few_rows_matmul(const MatrixView& x, const MatrixView& w, float* out, int64_t out_row_stride);
void few_rows_matmul(const MatrixView& x, const Bf16MatrixView& w, float* out, int64_t out_row_stride);

// The same product as a naive loop with one double accumulator per output: the reference.
void few_rows_matmul_reference(const MatrixView& x, const MatrixView& w, float* out, int64_t out_row_stride);
void few_rows_matmul_reference(const MatrixView& x, const Bf16MatrixView& w, float* out, int64_t out_row_stride);

// The float32 value of a bfloat16 bit pattern (exact: its 16 bits become the float's upper half).
inline float bf16_to_float(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float value;
  __builtin_memcpy(&value, &wide, sizeof(value));
  return value;
}

// Which code path few_rows_matmul takes: the widest this CPU has, unless one is forced (tests,
// benchmarks). All paths give the same results up to float rounding.
enum class FewRowsPath { kAvx512, kAvx2Fma, kPortable };
FewRowsPath few_rows_matmul_path();
bool few_rows_matmul_path_available(FewRowsPath path);  // this CPU and this build can run it
const char* few_rows_matmul_path_name(FewRowsPath path);  // "AVX-512", "AVX2+FMA", "portable"
void force_few_rows_matmul_path(FewRowsPath path);  // std::invalid_argument where not available

// Threads for large products (0 = all cores); nextn sets it with the BLAS thread count.
void set_few_rows_matmul_threads(int threads);
int few_rows_matmul_threads();
// Threads worth using for a product of this many multiply-adds (1 when a helper would cost more
// than it saves), at most few_rows_matmul_threads().
int few_rows_threads_for(int64_t multiply_adds);

}  // namespace nextn::kernels
