#include "nextn/training/expert_bias.h"

#include "nextn/util/error.h"

namespace nextn {

void ExpertLoadAccumulator::add(const std::vector<MoeStats>& stats) {
  if (counts_.empty()) {
    for (const auto& s : stats) counts_.push_back(s.expert_counts.to(torch::kLong).clone());
    return;
  }
  NEXTN_CHECK(stats.size() == counts_.size(), "micro-batch has ", stats.size(), " MoE layers, previous had ",
              counts_.size());
  for (size_t i = 0; i < stats.size(); ++i) counts_[i] += stats[i].expert_counts.to(torch::kLong);
}

void update_expert_bias(std::vector<Moe>& layers, const std::vector<torch::Tensor>& counts, double gamma,
                        bool recenter) {
  NEXTN_CHECK(counts.size() <= layers.size(), "expert counts for ", counts.size(), " layers, model has ",
              layers.size(), " MoE layers");
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < counts.size(); ++i) {
    torch::Tensor& bias = layers[i]->gate->e_score_correction_bias;
    auto load = counts[i].to(torch::kDouble);
    auto direction = torch::sign(load.mean() - load);  // +1 underloaded, -1 overloaded, 0 exactly even
    bias.add_((direction * gamma).to(bias.scalar_type()).to(bias.device()));
    if (recenter) bias.sub_(bias.mean());
  }
}

}  // namespace nextn
