// RMSNorm (Zhang & Sennrich 2019): y = x / sqrt(mean(x^2) + eps) * weight, computed in at least
// fp32 so that bf16 activations do not lose the normalisation.
#pragma once

#include <torch/torch.h>

namespace nextn {

// The formula in libtorch operators: what training runs, and the reference for decoding's few rows
// (which RMSNormImpl::forward hands to kernels::rms_norm_rows).
torch::Tensor rms_norm_reference(const torch::Tensor& x, const torch::Tensor& weight, double eps);

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

// The precision reductions and softmaxes run in: fp32 for half types, the input's own type else.
torch::ScalarType compute_dtype(torch::ScalarType input);

}  // namespace nextn
