#include "nextn/training/sharded_checkpoint.h"

#include "nextn/util/error.h"

namespace nextn {
namespace {

// Each sharded parameter (by identity) and the layer's experts it belongs to.
std::map<const void*, RoutedExpertsImpl*> sharded_parameters(DeepSeekV3Impl& model) {
  std::map<const void*, RoutedExpertsImpl*> result;
  for (auto& moe : model.moe_layers()) {
    if (!moe->experts->is_sharded()) continue;
    result[moe->experts->gate_up_proj.unsafeGetTensorImpl()] = moe->experts.get();
    result[moe->experts->down_proj.unsafeGetTensorImpl()] = moe->experts.get();
  }
  return result;
}

torch::Tensor gather_stack(dist::Communicator& group, const torch::Tensor& local) {
  auto pieces = group.gather(local.detach().contiguous(), 0);
  return pieces.empty() ? torch::Tensor() : torch::cat(pieces, 0);
}

}  // namespace

GatheredState gather_for_checkpoint(DeepSeekV3Impl& model, const AdamW& optimizer, dist::Cluster* cluster_or_null) {
  GatheredState state;
  const auto sharded = sharded_parameters(model);
  if (sharded.empty()) {
    state.optimizer_tensors = optimizer.state_tensors();
    return state;
  }
  NEXTN_CHECK(cluster_or_null != nullptr, "gather_for_checkpoint: sharded experts need their cluster");
  dist::Cluster& cluster = *cluster_or_null;
  // Only the group that holds rank 0 gathers; it is ranks [0, E).
  if (cluster.rank() >= cluster.expert_parallel()) return state;
  dist::Communicator& group = *cluster.experts();
  torch::NoGradGuard no_grad;
  for (auto& moe : model.moe_layers()) {
    ExpertStacks full{gather_stack(group, moe->experts->gate_up_proj), gather_stack(group, moe->experts->down_proj)};
    if (cluster.is_main()) state.full_experts[moe->experts.get()] = full;
  }
  for (const OptimizedParameter& p : optimizer.parameters()) {
    const bool is_expert = sharded.count(p.param.unsafeGetTensorImpl()) > 0;
    for (const auto& [suffix, moment] : {std::pair<const char*, torch::Tensor>{".exp_avg", p.exp_avg},
                                         std::pair<const char*, torch::Tensor>{".exp_avg_sq", p.exp_avg_sq}}) {
      torch::Tensor complete = is_expert ? gather_stack(group, moment) : moment;
      if (cluster.is_main()) state.optimizer_tensors.push_back({p.name + suffix, complete});
    }
  }
  return state;
}

void slice_expert_optimizer_state(std::map<std::string, torch::Tensor>& tensors, DeepSeekV3Impl& model,
                                  const AdamW& optimizer) {
  const auto sharded = sharded_parameters(model);
  for (const OptimizedParameter& p : optimizer.parameters()) {
    auto layer = sharded.find(p.param.unsafeGetTensorImpl());
    if (layer == sharded.end()) continue;
    for (const char* suffix : {".exp_avg", ".exp_avg_sq"}) {
      auto it = tensors.find(p.name + suffix);
      if (it == tensors.end()) continue;  // AdamW::load_state names what is missing
      const RoutedExpertsImpl& experts = *layer->second;
      NEXTN_CHECK(it->second.dim() >= 1 && it->second.size(0) == experts.num_experts(), "optimizer state '",
                  it->first, "' has ", it->second.dim() >= 1 ? it->second.size(0) : 0, " experts, the layer has ",
                  experts.num_experts());
      it->second = it->second.narrow(0, experts.first_expert(), experts.num_local_experts()).clone();
    }
  }
}

}  // namespace nextn
