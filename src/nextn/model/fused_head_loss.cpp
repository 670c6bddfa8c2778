#include "nextn/model/fused_head_loss.h"

#include <algorithm>

#include "nextn/device/cpu_gemm.h"
#include "nextn/device/precision.h"
#include "nextn/model/rms_norm.h"
#include "nextn/util/error.h"

namespace nextn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

int64_t default_chunk_rows(int64_t vocab) {
  constexpr int64_t kChunkBytes = 8 << 20;
  return std::max<int64_t>(16, kChunkBytes / (vocab * static_cast<int64_t>(sizeof(float))));
}

struct ChunkedResult {
  torch::Tensor loss_sum;     // scalar, float32 (or double for double inputs)
  torch::Tensor correct;      // scalar double
  torch::Tensor grad_x;       // [N, H] for an upstream gradient of 1 (undefined unless asked)
  torch::Tensor grad_weight;  // [V, H]
};

// The loss over all rows, chunk by chunk; with `gradients`, also d loss / d x and d loss / d W.
ChunkedResult run_chunks(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& targets,
                         const torch::Tensor& counted, int64_t chunk_rows, bool gradients) {
  const int64_t rows = x.size(0);
  const auto reduce_type = compute_dtype(x.scalar_type());
  // The products' operand type: bf16 under bf16 autocast, else x's. Chosen here and cast once, so
  // that no product below depends on autocast (it does not cover addmm_, which would stay fp32).
  const auto product_type = product_dtype(x);
  FullPrecisionScope explicit_types;
  const auto xp = x.to(product_type);
  const auto wp = weight.to(product_type);
  ChunkedResult r;
  r.loss_sum = torch::zeros({}, x.options().dtype(reduce_type));
  r.correct = torch::zeros({}, x.options().dtype(torch::kDouble));
  if (gradients) {
    r.grad_x = torch::empty_like(x);
    r.grad_weight = torch::zeros_like(weight);
  }
  for (int64_t first = 0; first < rows; first += chunk_rows) {
    const int64_t n = std::min(chunk_rows, rows - first);
    auto xc = xp.narrow(0, first, n);
    auto tc = targets.narrow(0, first, n);
    auto cc = counted.narrow(0, first, n);
    auto logits = matmul_2d(xc, wp.t()).to(reduce_type);  // [n, V]
    auto picked = logits.gather(1, tc.unsqueeze(1)).squeeze(1);
    // One max pass gives the prediction (its first index, as argmax) and the shift; one exp pass
    // then serves both log Z = m + log sum exp(z - m) and softmax(z) = exp(z - m) / sum, in the
    // logits' memory: the elementwise passes over [n, V] were a tenth of a bf16 step.
    auto [top, predicted] = logits.max(-1);
    auto e = logits.sub_(top.unsqueeze(1)).exp_();
    auto sum_e = e.sum(-1);
    auto log_z = top + sum_e.log();
    r.loss_sum += ((log_z - picked) * cc).sum();
    r.correct += predicted.eq(tc).to(cc.scalar_type()).mul(cc).sum().to(torch::kDouble);
    if (!gradients) continue;
    // softmax(z) - onehot(t), for counted rows only.
    auto g = e.div_(sum_e.unsqueeze(1));
    g.scatter_add_(1, tc.unsqueeze(1), -torch::ones({n, 1}, g.options()));
    g.mul_(cc.unsqueeze(1));
    auto gp = g.to(product_type);
    auto grad_x_chunk = r.grad_x.narrow(0, first, n);
    matmul_2d_into(grad_x_chunk, gp, wp);
    matmul_2d_into(r.grad_weight, gp.t(), xc, /*accumulate=*/true);  // a bf16 chunk's product summed in fp32
  }
  return r;
}

class FusedHeadCrossEntropy : public torch::autograd::Function<FusedHeadCrossEntropy> {
 public:
  // Returns the summed loss; `correct` (no grad) is the second output.
  static variable_list forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor weight, torch::Tensor targets,
                               torch::Tensor counted, int64_t chunk_rows) {
    ChunkedResult r = run_chunks(x, weight, targets, counted, chunk_rows, /*gradients=*/true);
    ctx->save_for_backward({r.grad_x, r.grad_weight});
    ctx->mark_non_differentiable({r.correct});
    return {r.loss_sum, r.correct};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const auto scale = grad_outputs[0];
    return {saved[0] * scale.to(saved[0].scalar_type()), saved[1] * scale.to(saved[1].scalar_type()),
            torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

CrossEntropySum fused_head_cross_entropy(const torch::Tensor& x, const torch::Tensor& weight,
                                         const torch::Tensor& targets, int64_t ignore_index, int64_t chunk_rows) {
  NEXTN_CHECK(x.dim() == 2 && weight.dim() == 2 && x.size(1) == weight.size(1), "fused head: x [N, H] and weight [V, H] ",
              "expected, got ", x.sizes(), " and ", weight.sizes());
  NEXTN_CHECK(targets.dim() == 1 && targets.size(0) == x.size(0), "fused head: targets must be [", x.size(0), "], got ",
              targets.sizes());
  NEXTN_CHECK(chunk_rows >= 0, "fused head: chunk_rows must be >= 0, got ", chunk_rows);
  if (chunk_rows == 0) chunk_rows = default_chunk_rows(weight.size(0));
  auto counted_mask = targets.ne(ignore_index);
  auto safe_targets = targets.masked_fill(counted_mask.logical_not(), 0);
  auto counted = counted_mask.to(compute_dtype(x.scalar_type()));
  CrossEntropySum result;
  result.count = counted_mask.sum().item<int64_t>();
  const bool needs_grad = torch::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad());
  if (needs_grad) {
    auto outputs = FusedHeadCrossEntropy::apply(x.contiguous(), weight, safe_targets, counted, chunk_rows);
    result.loss_sum = outputs[0];
    result.correct = outputs[1];
  } else {
    ChunkedResult r = run_chunks(x, weight, safe_targets, counted, chunk_rows, /*gradients=*/false);
    result.loss_sum = r.loss_sum;
    result.correct = r.correct;
  }
  return result;
}

}  // namespace nextn
