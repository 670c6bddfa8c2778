// Decoding's matrices in the panel layout (kernels/panel_matmul.h), for as long as this object
// lives: every float32 CPU weight matrix of the model that few_rows_matmul multiplies (the
// attention's and MLPs' projections, each routed expert, the router, the MTP modules' projections
// and the output head) is packed once and registered, so that decoding's few-rows products run
// panel_matmul on the copy. It costs a second copy of those matrices (the prefill's BLAS products
// and training keep the original layout) and changes decoding's last bits against the row kernel;
// every decoding path of a process that holds one (plain, speculative, batched) computes the same
// chain per output, so their outputs stay equal to each other bit for bit.
//
// Where the panel kernel has no vector path (kernels::panel_matmul_vectorised(): not x86 with AVX2
// or AVX-512) it packs nothing: decoding reads the rows, with the row kernel's faster portable path.
//
// The weights must not change while it lives (training updates them in place: it never holds one).
#pragma once

#include <torch/torch.h>

#include <vector>

#include "nextn/kernels/few_rows_matmul.h"
#include "nextn/model/deepseek_v3.h"

namespace nextn::inference {

class DecodingPanels {
 public:
  explicit DecodingPanels(const DeepSeekV3& model);
  ~DecodingPanels();
  DecodingPanels(const DecodingPanels&) = delete;
  DecodingPanels& operator=(const DecodingPanels&) = delete;

  int64_t matrices() const { return static_cast<int64_t>(views_.size()); }
  int64_t bytes() const { return bytes_; }  // the copies' size

 private:
  void register_all(const DeepSeekV3& model);
  void unregister_all();

  std::vector<torch::Tensor> weights_;  // keeps each registered matrix's memory alive
  std::vector<kernels::MatrixView> views_;
  int64_t bytes_ = 0;
};

}  // namespace nextn::inference
