// Decoding's matrices in the panel layout (kernels/panel_matmul.h), for as long as this object
// lives: every float32 CPU weight matrix of the model that few_rows_matmul multiplies (the
// attention's and MLPs' projections, each routed expert, the router, the MTP modules' projections
// and the output head) is packed once and registered, so that decoding's few-rows products run
// panel_matmul on the copy. It costs a second copy of those matrices (the prefill's BLAS products
// and training keep the original layout) and changes decoding's last bits against the row kernel;
// every decoding path of a process that holds one (plain, speculative, batched) computes the same
// chain per output, so their outputs stay equal to each other bit for bit.
//
// The copies' precision (DecodingPrecision):
// - auto: bfloat16 for each matrix whose values are all bfloat16 (a bfloat16 checkpoint, as
//   DeepSeek's and most Hugging Face models ship), float32 for the others. Either copy gives the
//   same bits for such a matrix: auto changes no output, only the bytes each step reads.
// - fp32: every copy float32.
// - bf16: every copy bfloat16, float32 weights rounded to nearest, except the routers' gates,
//   whose scores decide which experts run (issue 23's rule: routing stays float32). Decoding reads
//   half the bytes; outputs change by the weights' rounding (to rounding, tested), and equal
//   each other across decoding paths as before.
//
// Where the panel kernel has no vector path (kernels::panel_matmul_vectorised(): not x86 with AVX2
// or AVX-512) it packs nothing: decoding reads the rows, with the row kernel's faster portable path
// (bf16 is refused there: it needs the panels).
//
// The weights must not change while it lives (training updates them in place: it never holds one).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "nextn/kernels/few_rows_matmul.h"
#include "nextn/model/deepseek_v3.h"

namespace nextn::inference {

enum class DecodingPrecision { kAuto, kFloat32, kBfloat16 };

DecodingPrecision parse_decoding_precision(const std::string& name);  // "auto", "fp32", "bf16"
std::string decoding_precision_name(DecodingPrecision precision);

class DecodingPanels {
 public:
  explicit DecodingPanels(const DeepSeekV3& model, DecodingPrecision precision = DecodingPrecision::kAuto);
  ~DecodingPanels();
  DecodingPanels(const DecodingPanels&) = delete;
  DecodingPanels& operator=(const DecodingPanels&) = delete;

  int64_t matrices() const { return static_cast<int64_t>(views_.size()); }
  int64_t bfloat16_matrices() const { return bfloat16_matrices_; }
  int64_t bytes() const { return bytes_; }  // the copies' size
  // "48.2 MiB, 70 matrices in fp32" / "... 68 in bf16, 2 in fp32": what serve and generate print.
  std::string describe() const;

 private:
  void register_all(const DeepSeekV3& model, DecodingPrecision precision);
  void unregister_all();

  std::vector<torch::Tensor> weights_;  // keeps each registered matrix's memory alive
  std::vector<kernels::MatrixView> views_;
  int64_t bfloat16_matrices_ = 0;
  int64_t bytes_ = 0;
};

}  // namespace nextn::inference
