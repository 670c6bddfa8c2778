#include "nextn/model/linear.h"

#include <algorithm>
#include <cmath>

#include "nextn/device/cpu_gemm.h"
#include "nextn/kernels/few_rows_matmul.h"

namespace nextn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

thread_local bool t_batched_decoding = false;

// Rows of x (all leading dimensions flattened) when the few-rows path applies, else 0.
int64_t few_rows(const torch::Tensor& x, const torch::Tensor& weight) {
  if (!x.device().is_cpu() || x.scalar_type() != weight.scalar_type()) return 0;
  if (torch::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad())) return 0;
  const int64_t in = weight.size(1);
  if (x.dim() == 0 || x.numel() == 0 || x.size(-1) != in) return 0;
  const int64_t rows = x.numel() / in;
  return few_rows_fit(rows) ? rows : 0;
}

kernels::MatrixView rows_of(const torch::Tensor& t) {
  return {t.data_ptr<float>(), t.size(0), t.size(1), t.stride(0)};
}

// out [rows, out_features] = x_rows [rows, in] W^T. float32 goes to the few-rows kernel (each
// weight row read once for all rows); other types take one BLAS matrix-vector product per row.
void few_rows_out(torch::Tensor& out, const torch::Tensor& x_rows, const torch::Tensor& weight) {
  const bool kernel = x_rows.scalar_type() == torch::kFloat && weight.stride(1) == 1 && out.stride(1) == 1;
  if (kernel) {
    const auto x = x_rows.stride(1) == 1 ? x_rows : x_rows.contiguous();
    for (int64_t first = 0; first < x.size(0); first += kernels::kFewRowsMax) {
      const int64_t rows = std::min(kernels::kFewRowsMax, x.size(0) - first);
      kernels::few_rows_matmul(rows_of(x.narrow(0, first, rows)), rows_of(weight),
                               out.data_ptr<float>() + first * out.stride(0), out.stride(0));
    }
    return;
  }
  for (int64_t r = 0; r < x_rows.size(0); ++r) {
    auto out_row = out.select(0, r);
    torch::mv_out(out_row, weight, x_rows.select(0, r));
  }
}

// y = x W^T on x [rows, in] with its two backward products, through mm (device/cpu_gemm.h): the
// float32 CPU products of training when they take oneDNN, which autograd does not see by itself.
class LinearOnCpuGemm : public torch::autograd::Function<LinearOnCpuGemm> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight) {
    ctx->save_for_backward({x, weight});
    return matmul_2d(x, weight.t());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& weight = saved[1];
    const auto& grad = grad_outputs[0];
    torch::Tensor grad_x, grad_weight;
    if (ctx->needs_input_grad(0)) grad_x = matmul_2d(grad, weight);        // [rows, out] x [out, in]
    if (ctx->needs_input_grad(1)) grad_weight = matmul_2d(grad.t(), x);    // [out, rows] x [rows, in]
    return {grad_x, grad_weight};
  }
};

}  // namespace

ScopedBatchedDecoding::ScopedBatchedDecoding() : previous_(t_batched_decoding) { t_batched_decoding = true; }
ScopedBatchedDecoding::~ScopedBatchedDecoding() { t_batched_decoding = previous_; }
bool batched_decoding_active() { return t_batched_decoding; }
bool few_rows_fit(int64_t rows) { return rows <= kFewRowsMaxRows || t_batched_decoding; }

bool takes_few_rows_kernels(const torch::Tensor& x, const torch::Tensor& weight, int64_t width) {
  if (!x.device().is_cpu() || !weight.device().is_cpu()) return false;
  if (x.scalar_type() != torch::kFloat || weight.scalar_type() != torch::kFloat) return false;
  // Only outside autograd: the kernels write raw memory that no graph sees, and checking every
  // parameter a layer's kernels read (some of them in place) would be easy to get wrong.
  if (torch::GradMode::is_enabled()) return false;
  if (x.dim() == 0 || x.size(-1) != width || x.numel() == 0 || !x.is_contiguous()) return false;
  return few_rows_fit(x.numel() / width);
}

torch::Tensor linear_no_bias(const torch::Tensor& x, const torch::Tensor& weight) {
  const int64_t rows = few_rows(x, weight);
  if (x.dim() == 0) return torch::nn::functional::linear(x, weight);  // its error message
  auto shape = x.sizes().vec();
  shape.back() = weight.size(0);
  if (rows == 0) {
    const auto x_rows = x.reshape({-1, x.size(-1)});
    if (!takes_onednn(x_rows, weight)) return torch::nn::functional::linear(x, weight);
    return LinearOnCpuGemm::apply(x_rows, weight).view(shape);
  }
  auto out = torch::empty({rows, weight.size(0)}, x.options());
  few_rows_out(out, x.reshape({rows, weight.size(1)}), weight);
  return out.view(shape);
}

void linear_no_bias_out(torch::Tensor out, const torch::Tensor& x, const torch::Tensor& weight) {
  if (few_rows(x, weight) > 0 && x.dim() == 2) {
    few_rows_out(out, x, weight);
  } else {
    matmul_2d_into(out, x, weight.t());
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
