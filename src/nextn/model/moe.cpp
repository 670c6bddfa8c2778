#include "nextn/model/moe.h"

#include "nextn/model/linear.h"
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

bool MoeImpl::shared_expert_joins_routed(const torch::Tensor& x_flat) const {
  if (experts->is_sharded() || !few_rows_fit(x_flat.size(0)) || !experts->few_token_kernel_applies(x_flat)) return false;
  if (!x_flat.is_contiguous()) return false;
  for (const auto& linear : {shared_experts->gate_proj, shared_experts->up_proj, shared_experts->down_proj}) {
    if (linear->weight.scalar_type() != torch::kFloat || !linear->weight.device().is_cpu() ||
        !linear->weight.is_contiguous()) {
      return false;
    }
  }
  return true;
}

SharedExpertRows MoeImpl::shared_expert_rows() const {
  return {shared_experts->gate_proj->weight.data_ptr<float>(), shared_experts->up_proj->weight.data_ptr<float>(),
          shared_experts->down_proj->weight.data_ptr<float>(), shared_experts->gate_proj->weight.size(0)};
}

torch::Tensor MoeImpl::forward(const torch::Tensor& x, MoeStats* stats) {
  const int64_t batch = x.size(0), length = x.size(1);
  auto x_flat = x.reshape({batch * length, x.size(2)});
  Routing routing = [&] {
    ScopedPhase phase("moe.route");
    return gate(x_flat);
  }();
  torch::Tensor out;
  if (shared_experts && shared_expert_joins_routed(x_flat)) {
    ScopedPhase phase("moe.experts");
    out = experts->forward_few_tokens(x_flat, routing, shared_expert_rows());
  } else {
    out = experts(x_flat, routing);  // its grouped path times its own phases (moe.dispatch, moe.experts, ...)
    if (shared_experts) {
      ScopedPhase phase("moe.shared_experts");
      out = out + shared_experts(x_flat);
    }
  }
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
