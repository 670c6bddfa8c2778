#include "nextn/model/rms_norm.h"

#include "nextn/kernels/row_ops.h"
#include "nextn/model/linear.h"

namespace nextn {

torch::ScalarType compute_dtype(torch::ScalarType input) {
  return (input == torch::kBFloat16 || input == torch::kHalf) ? torch::kFloat : input;
}

torch::Tensor rms_norm_reference(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  auto xc = x.to(compute_dtype(x.scalar_type()));
  auto normed = xc * torch::rsqrt(xc.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return normed.to(x.scalar_type()) * weight.to(x.scalar_type());
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  const int64_t dim = weight.size(0);
  if (!takes_few_rows_kernels(x, weight, dim) || !weight.is_contiguous()) return rms_norm_reference(x, weight, eps);
  auto out = torch::empty_like(x);
  kernels::rms_norm_rows(x.data_ptr<float>(), x.numel() / dim, dim, dim, weight.data_ptr<float>(), eps,
                         out.data_ptr<float>(), dim);
  return out;
}

}  // namespace nextn
