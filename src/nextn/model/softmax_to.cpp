#include "nextn/model/softmax_to.h"

namespace nextn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class SoftmaxTo : public torch::autograd::Function<SoftmaxTo> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& logits, torch::ScalarType dtype) {
    auto probs = torch::softmax(logits, -1).to(dtype);
    ctx->save_for_backward({probs});
    ctx->saved_data["logits_type"] = static_cast<int64_t>(logits.scalar_type());
    return probs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto type = static_cast<torch::ScalarType>(ctx->saved_data["logits_type"].toInt());
    auto p = ctx->get_saved_variables()[0].to(type);
    auto g = grad_outputs[0].to(type);
    auto grad = p * (g - (g * p).sum(-1, /*keepdim=*/true));
    return {grad, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor softmax_to(const torch::Tensor& logits, torch::ScalarType dtype) {
  if (dtype == logits.scalar_type() || !torch::GradMode::is_enabled() || !logits.requires_grad()) {
    return torch::softmax(logits, -1).to(dtype);
  }
  return SoftmaxTo::apply(logits, dtype);
}

}  // namespace nextn
