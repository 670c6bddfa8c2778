// Bias-free linear layers (the only kind DeepSeek-V3 has) and the product y = x W^T behind them,
// with a path for decoding's few rows.
#pragma once

#include <torch/torch.h>

#include "nextn/kernels/few_rows_matmul.h"

namespace nextn {

// Up to this many rows, on CPU and outside autograd, y = x W^T skips BLAS: float32 goes to the
// few-rows kernel (kernels/few_rows_matmul.h), which reads each weight row once for all rows; other
// types run one matrix-vector product per row. OpenBLAS's sgemm packs the whole weight on every
// call, which at these sizes costs 3-6x its sgemv (2-core EPYC, OpenBLAS 0.3.21: the 8192x256
// output head, one row, 350 vs 92 us); from about 8 rows on, sgemm wins.
constexpr int64_t kFewRowsMaxRows = 4;
static_assert(kFewRowsMaxRows <= kernels::kFewRowsMax, "the kernel must take decoding's rows in one call");

// Whether x [..., width] takes decoding's plain-loop kernels (kernels/row_ops.h,
// kernels/latent_attention.h, route_few_tokens) with `weight`: both float32 on CPU, x's rows
// contiguous, at most kFewRowsMaxRows rows, and grad mode off (decoding runs under
// torch::NoGradGuard). Elsewhere (training, prefill, other types and devices) the libtorch
// formulas run: they are the reference.
bool takes_few_rows_kernels(const torch::Tensor& x, const torch::Tensor& weight, int64_t width);

// Decoding several sequences in one step (continuous batching, inference/batched_forward.h): while
// one of these lives on a thread, the few-rows kernels above take any number of rows on it, in
// kernel calls of at most kFewRowsMaxRows rows. The kernels compute each row on its own, so every
// sequence's row is bit for bit what decoding it alone computes, however many run together
// (BLAS's sgemm, which more rows would otherwise take, gives different last bits).
class ScopedBatchedDecoding {
 public:
  ScopedBatchedDecoding();
  ~ScopedBatchedDecoding();
  ScopedBatchedDecoding(const ScopedBatchedDecoding&) = delete;
  ScopedBatchedDecoding& operator=(const ScopedBatchedDecoding&) = delete;

 private:
  bool previous_;
};
bool batched_decoding_active();
// Rows the few-rows kernels take here: kFewRowsMaxRows, or any number while batched decoding.
bool few_rows_fit(int64_t rows);

// y = x W^T for x [..., in] and weight [out, in]: torch::nn::functional::linear without bias,
// with the few-rows path above (same values to rounding).
torch::Tensor linear_no_bias(const torch::Tensor& x, const torch::Tensor& weight);

// out = x W^T into `out` [rows, out_features] (a view of a larger buffer is fine); no autograd.
void linear_no_bias_out(torch::Tensor out, const torch::Tensor& x, const torch::Tensor& weight);

class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features);
  torch::Tensor forward(const torch::Tensor& x) { return linear_no_bias(x, weight); }

  torch::Tensor weight;  // [out_features, in_features]
};
TORCH_MODULE(Linear);

}  // namespace nextn
