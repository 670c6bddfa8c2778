#include "nextn/model/linear.h"

#include <cmath>

namespace nextn {
namespace {

// Rows of x (all leading dimensions flattened) when the matrix-vector path applies, else 0.
int64_t matvec_rows(const torch::Tensor& x, const torch::Tensor& weight) {
  if (!x.device().is_cpu() || x.scalar_type() != weight.scalar_type()) return 0;
  if (torch::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad())) return 0;
  const int64_t in = weight.size(1);
  if (x.dim() == 0 || x.numel() == 0 || x.size(-1) != in) return 0;
  const int64_t rows = x.numel() / in;
  return rows <= kMatVecMaxRows ? rows : 0;
}

void matvec_rows_out(torch::Tensor& out, const torch::Tensor& x_rows, const torch::Tensor& weight) {
  for (int64_t r = 0; r < x_rows.size(0); ++r) {
    auto out_row = out.select(0, r);
    torch::mv_out(out_row, weight, x_rows.select(0, r));
  }
}

}  // namespace

torch::Tensor linear_no_bias(const torch::Tensor& x, const torch::Tensor& weight) {
  const int64_t rows = matvec_rows(x, weight);
  if (rows == 0) return torch::nn::functional::linear(x, weight);
  auto shape = x.sizes().vec();
  shape.back() = weight.size(0);
  if (rows == 1) return torch::mv(weight, x.reshape({weight.size(1)})).view(shape);
  auto out = torch::empty({rows, weight.size(0)}, x.options());
  matvec_rows_out(out, x.reshape({rows, weight.size(1)}), weight);
  return out.view(shape);
}

void linear_no_bias_out(torch::Tensor out, const torch::Tensor& x, const torch::Tensor& weight) {
  if (matvec_rows(x, weight) > 0 && x.dim() == 2) {
    matvec_rows_out(out, x, weight);
  } else {
    torch::mm_out(out, x, weight.t());
  }
}

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features) {
  weight = register_parameter("weight", torch::empty({out_features, in_features}));
  // torch::nn::Linear's initialisation, so that a seed draws the same weights as it always did
  // (DeepSeekV3Impl::init_weights redraws them from N(0, initializer_range) afterwards anyway).
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
}

}  // namespace nextn
