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
//   most Hugging Face models ship), float32 for the others. Either copy gives the
//   same bits for such a matrix: auto changes no output, only the bytes each step reads.
// - fp32: every copy float32.
// - bf16: the products in bfloat16 (kernels::PanelType::kBfloat16Dot: weights and inputs rounded
//   to bfloat16, pairs of products summed in float32, as DeepSeek's bf16 inference and
//   `train --precision bf16` compute; vdpbf16ps where the CPU has AVX512_BF16), except the routers'
//   gates, whose scores decide which experts run (issue 23's rule: routing stays float32; they
//   follow auto's rule). Half the bytes and, with the instruction, twice the multiply-adds per
//   cycle; outputs change by the rounding (tested to tolerance), and equal each other across
//   decoding paths as before.
//
// Where the panel kernel has no vector path (kernels::panel_matmul_vectorised(): not x86 with AVX2
// or AVX-512) it packs nothing: decoding reads the rows, with the row kernel's faster portable path
// (bf16 is refused there: it needs the panels).
//
// The weights must not change while it lives (training updates them in place: it never holds one).
// Two may live for one model only where they pack each matrix alike (the same precision, or auto
// and fp32 on float32 values); otherwise the second is refused.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "nextn/kernels/few_rows_matmul.h"
#include "nextn/kernels/panel_matmul.h"
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
  int64_t matrices_of(kernels::PanelType type) const;  // copies of that type
  int64_t bytes() const { return bytes_; }  // the copies' size
  // "50.5 MiB, 210 matrices: 210 fp32", "25.4 MiB, 210 matrices: 205 bf16 products, 5 fp32": what
  // serve and bench decode print.
  std::string describe() const;

 private:
  void register_all(const DeepSeekV3& model, DecodingPrecision precision);
  void unregister_all();

  std::vector<torch::Tensor> weights_;  // keeps each registered matrix's memory alive
  std::vector<kernels::MatrixView> views_;
  int64_t counts_[3] = {0, 0, 0};  // by kernels::PanelType
  int64_t bytes_ = 0;
};

}  // namespace nextn::inference
