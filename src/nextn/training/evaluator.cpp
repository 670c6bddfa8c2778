#include "nextn/training/evaluator.h"

#include "nextn/data/window_loader.h"
#include "nextn/model/load_balance.h"
#include "nextn/model/objective.h"
#include "nextn/util/error.h"

namespace nextn {

namespace {

// This rank's rows [first, first + count) of a batch of `rows` split over `world` ranks.
std::pair<int64_t, int64_t> share_of(int64_t rows, int rank, int world) {
  const int64_t first = rows * rank / world, end = rows * (rank + 1) / world;
  return {first, end - first};
}

data::Batch rows_of(const data::Batch& batch, int64_t first, int64_t count) {
  return {batch.tokens.narrow(0, first, count), batch.segment_ids.narrow(0, first, count)};
}

}  // namespace

EvalMetrics evaluate(DeepSeekV3Impl& model, const data::TokenDataset& dataset, const EvalOptions& options,
                     dist::Cluster* cluster) {
  // A negative count used to evaluate nothing and report a loss of 0 on 0 tokens.
  NEXTN_CHECK(options.max_batches >= 0, "max_batches must be >= 0 (0: the whole validation split), got ",
              options.max_batches);
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const bool distributed = cluster != nullptr && cluster->distributed();
  const int rank = distributed ? cluster->rank() : 0, world = distributed ? cluster->world_size() : 1;
  const bool lockstep = distributed && cluster->expert_parallel() > 1;
  data::EvalWindows windows(dataset, data::Split::kValidation, options.batch_size * world, options.seq_len);
  NEXTN_CHECK(windows.num_windows() > 0, "the validation split of '", dataset.dir(), "' has no window of ",
              options.seq_len + 1, " tokens");
  const torch::Device device = model.output_weight().device();

  double main_nll = 0, main_correct = 0;
  int64_t main_count = 0;
  // Sized up front, so that every rank adds the same list even if it evaluated nothing.
  const int64_t depth = options.mtp ? std::min(model.config().mtp_depth(), options.seq_len - 1) : 0;
  std::vector<double> mtp_nll(depth, 0.0), mtp_correct(depth, 0.0);
  std::vector<int64_t> mtp_count(depth, 0);
  std::vector<torch::Tensor> loads;
  for (int64_t i = 0; i < model.config().num_hidden_layers; ++i) {
    if (model.layer(i)->is_moe()) loads.push_back(torch::zeros({model.config().n_routed_experts}, torch::kLong));
  }
  for (int64_t k = 1; k <= depth; ++k) {
    if (model.mtp_module(k)->block->is_moe()) loads.push_back(torch::zeros({model.config().n_routed_experts}, torch::kLong));
  }
  data::Batch batch;
  int64_t batches = 0;
  data::Batch global_batch;
  while ((options.max_batches == 0 || batches < options.max_batches) && windows.next(global_batch)) {
    ++batches;
    auto [first, count] = share_of(global_batch.tokens.size(0), rank, world);
    const bool discard = count == 0;
    if (discard && !lockstep) continue;
    batch = discard ? rows_of(global_batch, 0, 1) : rows_of(global_batch, first, count);
    auto tokens = batch.tokens.to(device);
    auto inputs = tokens.narrow(1, 0, options.seq_len);
    auto labels = tokens.narrow(1, 1, options.seq_len);
    ModelOutput out = model.forward(inputs, ForwardOptions{options.mtp, true, /*fused_head_loss=*/true});
    ObjectiveOutput obj = compute_objective(out, labels, batch.segment_ids.to(device), ObjectiveOptions{});
    if (discard) continue;
    main_nll += obj.main_loss.item<double>() * obj.main_tokens;
    main_correct += obj.main_accuracy.item<double>() * obj.main_tokens;
    main_count += obj.main_tokens;
    NEXTN_CHECK(static_cast<int64_t>(obj.mtp_loss.size()) == depth && out.moe_stats.size() == loads.size(),
                "evaluate: the model ran ", obj.mtp_loss.size(), " MTP depths and ", out.moe_stats.size(),
                " MoE layers, expected ", depth, " and ", loads.size());
    for (size_t k = 0; k < obj.mtp_loss.size(); ++k) {
      // mtp_loss is normalised by the main token count (Eq. 24); undo that to get a sum.
      mtp_nll[k] += obj.mtp_loss[k].item<double>() * obj.main_tokens;
      mtp_correct[k] += obj.mtp_accuracy[k].item<double>() * obj.mtp_tokens[k];
      mtp_count[k] += obj.mtp_tokens[k];
    }
    for (size_t l = 0; l < loads.size(); ++l) loads[l] += out.moe_stats[l].expert_counts.to(torch::kCPU);
  }
  if (was_training) model.train();
  if (distributed) {
    // Sums over the world: [main nll, correct, count, then per depth nll, correct, count].
    std::vector<double> sums = {main_nll, main_correct, static_cast<double>(main_count)};
    for (size_t k = 0; k < mtp_nll.size(); ++k) {
      sums.insert(sums.end(), {mtp_nll[k], mtp_correct[k], static_cast<double>(mtp_count[k])});
    }
    auto summed = torch::tensor(sums, torch::kDouble);
    cluster->world()->all_reduce_sum(summed);
    auto* v = summed.data_ptr<double>();
    main_nll = v[0];
    main_correct = v[1];
    main_count = static_cast<int64_t>(v[2]);
    for (size_t k = 0; k < mtp_nll.size(); ++k) {
      mtp_nll[k] = v[3 + 3 * k];
      mtp_correct[k] = v[4 + 3 * k];
      mtp_count[k] = static_cast<int64_t>(v[5 + 3 * k]);
    }
    for (auto& load : loads) cluster->world()->all_reduce_sum(load);
  }

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
