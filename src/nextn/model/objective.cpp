#include "nextn/model/objective.h"

#include "nextn/model/cross_entropy.h"
#include "nextn/model/fused_head_loss.h"
#include "nextn/util/error.h"

namespace nextn {
namespace {

// Depth k's summed cross-entropy (k = 0: the main model), from the logits or through the fused head.
CrossEntropySum depth_cross_entropy(const ModelOutput& output, int64_t k, const torch::Tensor& targets,
                                    int64_t ignore_index) {
  if (output.logits.defined()) {
    return cross_entropy_sum(k == 0 ? output.logits : output.mtp_logits[k - 1], targets, ignore_index);
  }
  const torch::Tensor& x = k == 0 ? output.head_input : output.mtp_head_input[k - 1];
  return fused_head_cross_entropy(x.reshape({-1, x.size(-1)}), output.head_weight, targets.reshape({-1}), ignore_index);
}

}  // namespace

ObjectiveOutput compute_objective(const ModelOutput& output, const torch::Tensor& labels,
                                  const torch::Tensor& segment_ids, const ObjectiveOptions& options) {
  const bool fused = !output.logits.defined();
  NEXTN_CHECK(!fused || (output.head_input.defined() && output.head_weight.defined()),
              "compute_objective: the model output has neither logits nor the fused head's inputs");
  const torch::Tensor& rows = fused ? output.head_input : output.logits;
  const int64_t batch = rows.size(0), length = rows.size(1);
  NEXTN_CHECK(labels.sizes() == torch::IntArrayRef({batch, length}), "labels must be [", batch, ", ",
              length, "], got ", labels.sizes());
  if (segment_ids.defined()) {
    NEXTN_CHECK(segment_ids.sizes() == torch::IntArrayRef({batch, length + 1}), "segment_ids must be [",
                batch, ", ", length + 1, "] (the whole window), got ", segment_ids.sizes());
  }
  ObjectiveOutput out;
  CrossEntropySum main = depth_cross_entropy(output, 0, labels, options.ignore_index);
  out.main_tokens = main.count;
  const double denominator = static_cast<double>(std::max<int64_t>(main.count, 1));
  out.main_loss = main.loss_sum / denominator;
  out.main_accuracy = main.correct / denominator;
  out.total = out.main_loss;

  const int64_t depth = static_cast<int64_t>(fused ? output.mtp_head_input.size() : output.mtp_logits.size());
  for (int64_t k = 1; k <= depth; ++k) {
    const int64_t span = length - k;
    auto targets = labels.narrow(1, k, span);  // position i predicts t_{i+k+1} = labels[i+k]
    if (segment_ids.defined()) {
      auto same_document = segment_ids.narrow(1, 0, span).eq(segment_ids.narrow(1, k + 1, span));
      targets = targets.masked_fill(same_document.logical_not(), options.ignore_index);
    }
    CrossEntropySum mtp = depth_cross_entropy(output, k, targets, options.ignore_index);
    out.mtp_loss.push_back(mtp.loss_sum / denominator);  // Eq. 24: divided by T, not T-k
    out.mtp_accuracy.push_back(mtp.correct / static_cast<double>(std::max<int64_t>(mtp.count, 1)));
    out.mtp_tokens.push_back(mtp.count);
  }
  if (depth > 0) {
    auto mtp_sum = out.mtp_loss[0];
    for (int64_t k = 1; k < depth; ++k) mtp_sum = mtp_sum + out.mtp_loss[k];
    out.total = out.total + (options.mtp_lambda / static_cast<double>(depth)) * mtp_sum;  // Eq. 25
  }

  out.balance_loss = torch::zeros({}, out.main_loss.options());
  for (const MoeStats& stats : output.moe_stats) {
    if (options.sequence_balance_alpha != 0.0) {
      out.balance_loss = out.balance_loss + options.sequence_balance_alpha * stats.sequence_balance;
    }
    if (options.batch_balance_alpha != 0.0) {
      out.balance_loss = out.balance_loss + options.batch_balance_alpha * stats.batch_balance;
    }
  }
  out.total = out.total + out.balance_loss.to(out.total.scalar_type());
  return out;
}

}  // namespace nextn
