#include "nextn/model/moe.h"

#include "nextn/model/load_balance.h"
#include "nextn/util/phase_timer.h"

namespace nextn {

MoeImpl::MoeImpl(const ModelConfig& config) {
  gate = register_module("gate", MoeGate(config));
  experts = register_module("experts", RoutedExperts(config));
  if (config.n_shared_experts > 0) {
    shared_experts = register_module(
        "shared_experts", DenseMlp(config.hidden_size, config.moe_intermediate_size * config.n_shared_experts));
  }
}

torch::Tensor MoeImpl::forward(const torch::Tensor& x, MoeStats* stats) {
  const int64_t batch = x.size(0), length = x.size(1);
  auto x_flat = x.reshape({batch * length, x.size(2)});
  Routing routing = [&] {
    ScopedPhase phase("moe.route");
    return gate(x_flat);
  }();
  auto out = experts(x_flat, routing);
  if (shared_experts) out = out + shared_experts(x_flat);
  if (stats != nullptr) {
    stats->expert_counts = expert_token_counts(routing.expert_ids, experts->num_experts());
    // Eq. 18 counts expert i for token t when s_{i,t} is among the K_r largest affinities
    // themselves, Topk({s_{j,t}}, K_r): no bias, no group limit (Megatron-LM's sequence auxiliary
    // loss likewise); the experts actually selected may differ.
    const auto top_affinities = std::get<1>(routing.scores.detach().topk(routing.expert_ids.size(1), -1));
    stats->sequence_balance = sequence_balance_term(routing.scores, top_affinities, batch, length);
    stats->batch_balance = batch_balance_term(routing.scores, routing.expert_ids);
    stats->expert_ids = routing.expert_ids;
  }
  return out.view(x.sizes());
}

}  // namespace nextn
