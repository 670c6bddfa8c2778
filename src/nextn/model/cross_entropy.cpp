#include "nextn/model/cross_entropy.h"

#include "nextn/model/rms_norm.h"

namespace nextn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class SummedCrossEntropy : public torch::autograd::Function<SummedCrossEntropy> {
 public:
  // targets: already made safe (ignored rows point at class 0); counted: float [N], 1 or 0.
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor logits, torch::Tensor targets, torch::Tensor counted) {
    auto log_probs = torch::log_softmax(logits.to(compute_dtype(logits.scalar_type())), -1);
    auto picked = log_probs.gather(1, targets.unsqueeze(1)).squeeze(1);
    ctx->save_for_backward({logits, targets, counted});
    return -(picked * counted).sum();
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const auto& logits = saved[0];
    const auto& targets = saved[1];
    const auto& counted = saved[2];
    // d/dlogits of -log softmax(logits)[t] = softmax(logits) - onehot(t), per counted row.
    auto grad = torch::softmax(logits.to(compute_dtype(logits.scalar_type())), -1);
    grad.scatter_add_(1, targets.unsqueeze(1), -torch::ones({targets.size(0), 1}, grad.options()));
    grad.mul_((counted * grad_outputs[0].to(counted.scalar_type())).unsqueeze(1));
    return {grad.to(logits.scalar_type()), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

CrossEntropySum cross_entropy_sum(const torch::Tensor& logits, const torch::Tensor& targets, int64_t ignore_index) {
  auto flat_logits = logits.reshape({-1, logits.size(-1)});
  auto flat_targets = targets.reshape({-1});
  auto counted_mask = flat_targets.ne(ignore_index);
  auto safe_targets = flat_targets.masked_fill(counted_mask.logical_not(), 0);
  CrossEntropySum result;
  auto counted = counted_mask.to(compute_dtype(logits.scalar_type()));
  result.loss_sum = SummedCrossEntropy::apply(flat_logits, safe_targets, counted);
  torch::NoGradGuard no_grad;
  result.correct = flat_logits.argmax(-1).eq(flat_targets).logical_and(counted_mask).sum().to(torch::kDouble);
  result.count = counted_mask.sum().item<int64_t>();
  return result;
}

}  // namespace nextn
