// y = x W^T for decoding's few rows, on a copy of W packed for it: W's rows (the outputs) in panels
// of kPanelWidth, each panel stored input by input ([cols][kPanelWidth], zero-padded past the last
// output), so that the kernel streams every panel front to back and multiplies one broadcast input
// of each row into a whole vector of outputs (an outer product per input).
//
// Why a second layout beside few_rows_matmul's: there each output is a dot product along W's row,
// summed in vector lanes and folded at the end; the fold is a fixed cost per output and row, and
// rows of a few hundred inputs are short streams that the hardware prefetcher ramps up on again
// and again. Here each output accumulates its inputs in order (one fused multiply-add per input),
// so an 8-row step does 8x a row's multiply-adds and nothing else, and the weights are one long
// sequential stream per panel. Measured single-threaded on the 2-core EPYC (Zen 4), 8192x256 head:
// 1 row 1.2x faster warm, 1.8x from memory; 8 rows 1.6x warm, 2.4x from memory.
//
// Every output of every row is the same chain, fma(x[r][i], W[o][i], acc) for i = 0, 1, ...,
// whatever the row count, thread count or instruction set: a row's result never depends on the
// rows computed with it (decoding alone, a speculative verify, a batched server step), and every
// path equals panel_matmul_reference bit for bit.
//
// A copy may hold its weights in bfloat16 (half the bytes: decoding's steps mostly wait on them):
// - kBfloat16: the kernel widens each weight to float32 exactly (a bfloat16 is a float32's upper
//   half) and runs the same chain, so a matrix whose values are all bfloat16 (a bfloat16
//   checkpoint, loaded into float32) gives the same bits from this copy as from a float32 one.
// - kBfloat16Dot: the products themselves in bfloat16, as AVX512_BF16's vdpbf16ps computes them
//   (two products per instruction: twice the multiply-adds of float32 per cycle, which 8 rows need).
//   The inputs are rounded to bfloat16 too (subnormals read as zero), taken in pairs, and each
//   output's chain is, for k = 0, 1, ...:
//     acc = ftz(fma(W[o][2k+1], x[2k+1], acc));  acc = ftz(fma(W[o][2k], x[2k], acc))
//   (ftz: a subnormal result becomes a zero of its sign; past an odd last input a zero pair).
//   CPUs without the instruction compute that chain with fused multiply-adds: the same bits.
// Float32 weights are rounded to nearest (ties to even) when packed.
#pragma once

#include <cstdint>
#include <memory>

#include "nextn/kernels/few_rows_matmul.h"

namespace nextn::kernels {

// Outputs per panel: three AVX-512 vectors, six AVX2 ones.
constexpr int64_t kPanelWidth = 48;

// A float32 matrix [rows, cols] in panels (see above), stored as `type`; owns its memory (64-byte
// aligned).
// What a packed copy stores, and how the kernel multiplies it (above).
enum class PanelType { kFloat32, kBfloat16, kBfloat16Dot };

// float32 -> bfloat16 bits, rounded to nearest, ties to even (NaN stays NaN): torch's conversion.
uint16_t round_to_bfloat16(float value);
float bfloat16_to_float(uint16_t bits);  // exact
// An operand of the bfloat16 dot products: rounded to bfloat16, a subnormal to a zero of its sign
// (vdpbf16ps reads subnormals as zero).
uint16_t bfloat16_dot_operand(float value);

// Whether every value of w is a bfloat16 (rounding it changes nothing).
bool holds_bfloat16_exactly(const MatrixView& w);

class PanelMatrix {
 public:
  explicit PanelMatrix(const MatrixView& w, PanelType type = PanelType::kFloat32);  // packs a copy of w
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  PanelType type() const { return type_; }
  int64_t panels() const { return (rows_ + kPanelWidth - 1) / kPanelWidth; }
  static int64_t bytes_for(int64_t rows, int64_t cols, PanelType type = PanelType::kFloat32);  // the copy's size
  // Panel p of a float32 or bfloat16 copy: cols() groups of kPanelWidth weights, group i holding
  // W[p * kPanelWidth + j][i] at j (bfloat16: bits).
  const float* panel(int64_t p) const { return reinterpret_cast<const float*>(data_.get()) + p * cols_ * kPanelWidth; }
  const uint16_t* panel_bf16(int64_t p) const {
    return reinterpret_cast<const uint16_t*>(data_.get()) + p * cols_ * kPanelWidth;
  }
  // Panel p of a kBfloat16Dot copy: pair_count() groups of kPanelWidth words, word j of group k
  // holding W[o][2k] in its low half and W[o][2k+1] (0 past the last input) in its high half,
  // o = p * kPanelWidth + j.
  int64_t pair_count() const { return (cols_ + 1) / 2; }
  const uint32_t* panel_pairs(int64_t p) const {
    return reinterpret_cast<const uint32_t*>(data_.get()) + p * pair_count() * kPanelWidth;
  }
  float weight(int64_t row, int64_t col) const;  // as the kernel reads it (a bfloat16 widened)

 private:
  struct FreeAligned {
    void operator()(unsigned char* p) const;
  };
  int64_t rows_ = 0, cols_ = 0;
  PanelType type_ = PanelType::kFloat32;
  std::unique_ptr<unsigned char[], FreeAligned> data_;
};

// out[r * out_row_stride + o] = sum_i x[r][i] * W[o][i] for r < x.rows (1..kFewRowsMax),
// o < w.rows(); std::invalid_argument on other shapes. The instruction set is few_rows_matmul's
// (few_rows_matmul_path()), several threads when the product is large enough.
void panel_matmul(const MatrixView& x, const PanelMatrix& w, float* out, int64_t out_row_stride);

// Whether kBfloat16Dot copies run on vdpbf16ps (AVX-512 path, AVX512_BF16 on this CPU and build)
// rather than its chain in fused multiply-adds; tests turn it off to compare the two.
bool bfloat16_dot_instruction();
void allow_bfloat16_dot_instruction(bool allowed);

// Whether panel_matmul runs a vector path here: AVX2+FMA or AVX-512, in this build, on this CPU,
// and few_rows_matmul_path() one of them. The portable path is the reference's scalar chain, slower
// than the row kernel's portable path: decoding packs panels only where this holds.
bool panel_matmul_vectorised();

// The chain above as a plain loop (std::fma, one output at a time): what every path must equal.
void panel_matmul_reference(const MatrixView& x, const PanelMatrix& w, float* out, int64_t out_row_stride);

// Decoding's matrices in panels, found by the float32 matrix they copy: while a matrix is
// registered, few_rows_matmul on exactly that view (data, rows, cols, row stride) runs
// panel_matmul on its copy. The registrant keeps the matrix's memory alive and unchanged until it
// unregisters (inference/decoding_panels.h does both for a model). Registrations are counted: a
// matrix registered twice stays registered until it is unregistered twice; registering it again
// as another type while it is registered is std::invalid_argument (one matrix, one copy).
void register_panels(const MatrixView& w, PanelType type = PanelType::kFloat32);
void unregister_panels(const MatrixView& w);
std::shared_ptr<const PanelMatrix> registered_panels(const MatrixView& w);  // null when not registered
int64_t registered_panel_count();

}  // namespace nextn::kernels
