// Attention's batched products, torch::matmul for a [B, H, m, k] by b [B, H or 1, k, n] (b shared
// by every head when its H is 1, as MLA's rope key is), whose float32 CPU products take the
// training library of device/cpu_gemm.h one matrix at a time (no copy of a transposed view), the
// matrices split over libtorch's threads. Elsewhere (bf16 autocast, CUDA, double) torch::matmul.
#pragma once

#include <torch/torch.h>

namespace nextn {

torch::Tensor batched_matmul(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace nextn
