#include "nextn/model/batched_matmul.h"

#include <ATen/Parallel.h>

#include "nextn/device/cpu_gemm.h"
#include "nextn/util/error.h"

namespace nextn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// out[i, j] (+)= op_a(a[i, j or 0]) op_b(b[i, j or 0]) for every (i, j) of out's first two
// dimensions; a transposed operand is a transposed view, no copy. Each matrix on one thread.
void products_per_matrix(torch::Tensor& out, const torch::Tensor& a, bool transpose_a, const torch::Tensor& b,
                         bool transpose_b, bool accumulate_over_heads) {
  const int64_t batch = a.size(0), heads = std::max(a.size(1), b.size(1));
  auto matrix = [](const torch::Tensor& t, int64_t i, int64_t j, bool transpose) {
    auto m = t.select(0, i).select(0, t.size(1) == 1 ? 0 : j);
    return transpose ? m.t() : m;
  };
  if (accumulate_over_heads) {  // out has one head: the sum over heads, in head order
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        auto target = out.select(0, i).select(0, 0);
        for (int64_t j = 0; j < heads; ++j) {
          matmul_2d_into(target, matrix(a, i, j, transpose_a), matrix(b, i, j, transpose_b), /*accumulate=*/j > 0);
        }
      }
    });
    return;
  }
  at::parallel_for(0, batch * heads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const int64_t i = n / heads, j = n % heads;
      auto target = out.select(0, i).select(0, j);
      matmul_2d_into(target, matrix(a, i, j, transpose_a), matrix(b, i, j, transpose_b));
    }
  });
}

class BatchedMatmul : public torch::autograd::Function<BatchedMatmul> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& a, const torch::Tensor& b) {
    ctx->save_for_backward({a, b});
    auto out = torch::empty({a.size(0), a.size(1), a.size(2), b.size(3)}, a.options());
    products_per_matrix(out, a, false, b, false, false);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& a = saved[0];
    const auto& b = saved[1];
    const auto& grad = grad_outputs[0];
    torch::Tensor grad_a, grad_b;
    if (ctx->needs_input_grad(0)) {  // dA = dC B^T
      grad_a = torch::empty(a.sizes(), a.options());
      products_per_matrix(grad_a, grad, false, b, true, false);
    }
    if (ctx->needs_input_grad(1)) {  // dB = A^T dC, summed over the heads that shared b
      grad_b = torch::empty(b.sizes(), b.options());
      products_per_matrix(grad_b, a, true, grad, false, b.size(1) == 1 && a.size(1) > 1);
    }
    return {grad_a, grad_b};
  }
};

}  // namespace

torch::Tensor batched_matmul(const torch::Tensor& a, const torch::Tensor& b) {
  const bool shapes = a.dim() == 4 && b.dim() == 4 && a.size(0) == b.size(0) && a.size(3) == b.size(2) &&
                      (b.size(1) == a.size(1) || b.size(1) == 1);
  if (!shapes || a.numel() == 0 || b.numel() == 0) return torch::matmul(a, b);
  // The 2-D rule on one matrix of each stands for all (same type, device and autocast state).
  if (!takes_onednn(a.select(0, 0).select(0, 0), b.select(0, 0).select(0, 0))) return torch::matmul(a, b);
  return BatchedMatmul::apply(a, b);
}

}  // namespace nextn
