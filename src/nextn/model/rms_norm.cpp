#include "nextn/model/rms_norm.h"

namespace nextn {

torch::ScalarType compute_dtype(torch::ScalarType input) {
  return (input == torch::kBFloat16 || input == torch::kHalf) ? torch::kFloat : input;
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  auto xc = x.to(compute_dtype(x.scalar_type()));
  auto normed = xc * torch::rsqrt(xc.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return normed.to(x.scalar_type()) * weight.to(x.scalar_type());
}

}  // namespace nextn
