#include "nextn/training/evaluator.h"

#include "nextn/data/window_loader.h"
#include "nextn/model/load_balance.h"
#include "nextn/model/objective.h"
#include "nextn/util/error.h"

namespace nextn {

EvalMetrics evaluate(DeepSeekV3Impl& model, const data::TokenDataset& dataset, const EvalOptions& options) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  data::EvalWindows windows(dataset, data::Split::kValidation, options.batch_size, options.seq_len);
  NEXTN_CHECK(windows.num_windows() > 0, "the validation split of '", dataset.dir(), "' has no window of ",
              options.seq_len + 1, " tokens");
  const torch::Device device = model.output_weight().device();

  double main_nll = 0, main_correct = 0;
  int64_t main_count = 0;
  std::vector<double> mtp_nll, mtp_correct;
  std::vector<int64_t> mtp_count;
  std::vector<torch::Tensor> loads;
  data::Batch batch;
  int64_t batches = 0;
  while ((options.max_batches == 0 || batches < options.max_batches) && windows.next(batch)) {
    ++batches;
    auto tokens = batch.tokens.to(device);
    auto inputs = tokens.narrow(1, 0, options.seq_len);
    auto labels = tokens.narrow(1, 1, options.seq_len);
    ModelOutput out = model.forward(inputs, ForwardOptions{options.mtp, true});
    ObjectiveOutput obj = compute_objective(out, labels, batch.segment_ids.to(device), ObjectiveOptions{});
    main_nll += obj.main_loss.item<double>() * obj.main_tokens;
    main_correct += obj.main_accuracy.item<double>() * obj.main_tokens;
    main_count += obj.main_tokens;
    mtp_nll.resize(obj.mtp_loss.size(), 0.0);
    mtp_correct.resize(obj.mtp_loss.size(), 0.0);
    mtp_count.resize(obj.mtp_loss.size(), 0);
    for (size_t k = 0; k < obj.mtp_loss.size(); ++k) {
      // mtp_loss is normalised by the main token count (Eq. 24); undo that to get a sum.
      mtp_nll[k] += obj.mtp_loss[k].item<double>() * obj.main_tokens;
      mtp_correct[k] += obj.mtp_accuracy[k].item<double>() * obj.mtp_tokens[k];
      mtp_count[k] += obj.mtp_tokens[k];
    }
    if (loads.empty()) {
      for (const auto& s : out.moe_stats) loads.push_back(s.expert_counts.to(torch::kCPU).to(torch::kLong));
    } else {
      for (size_t l = 0; l < loads.size(); ++l) loads[l] += out.moe_stats[l].expert_counts.to(torch::kCPU);
    }
  }
  if (was_training) model.train();

  EvalMetrics m;
  m.tokens = main_count;
  m.main_loss = main_nll / std::max<int64_t>(main_count, 1);
  m.main_accuracy = main_correct / std::max<int64_t>(main_count, 1);
  for (size_t k = 0; k < mtp_nll.size(); ++k) {
    m.mtp_loss.push_back(mtp_nll[k] / std::max<int64_t>(mtp_count[k], 1));
    m.mtp_accuracy.push_back(mtp_correct[k] / std::max<int64_t>(mtp_count[k], 1));
  }
  for (const auto& load : loads) {
    m.max_vio_global.push_back(max_violation(load));
    auto fractions = load.to(torch::kDouble) / std::max<double>(1.0, load.sum().item<double>());
    m.expert_load.emplace_back(fractions.data_ptr<double>(), fractions.data_ptr<double>() + fractions.numel());
  }
  return m;
}

}  // namespace nextn
