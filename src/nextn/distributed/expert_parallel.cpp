#include "nextn/distributed/expert_parallel.h"

#include <algorithm>
#include <numeric>

#include "nextn/compat/torch_compat.h"
#include "nextn/util/error.h"
#include "nextn/util/phase_timer.h"

namespace nextn::dist {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Rows to and from the members of a group; its gradient goes back the way the rows came.
class AllToAllRows : public torch::autograd::Function<AllToAllRows> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor rows, int64_t group, std::vector<int64_t> send,
                               std::vector<int64_t> recv) {
    ctx->saved_data["group"] = group;
    ctx->saved_data["send"] = send;
    ctx->saved_data["recv"] = recv;
    ctx->saved_data["row_shape"] = rows.sizes().slice(1).vec();
    ctx->saved_data["dtype"] = static_cast<int64_t>(rows.scalar_type());
    return reinterpret_cast<Communicator*>(group)->all_to_all(rows, send, recv);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto* group = reinterpret_cast<Communicator*>(ctx->saved_data["group"].toInt());
    auto send = ctx->saved_data["send"].toIntVector();
    auto recv = ctx->saved_data["recv"].toIntVector();
    torch::Tensor grad = grads[0];
    if (!grad.defined()) {
      // Every rank must take part in the reverse exchange, used or not.
      std::vector<int64_t> shape = {std::accumulate(recv.begin(), recv.end(), int64_t{0})};
      for (int64_t d : ctx->saved_data["row_shape"].toIntVector()) shape.push_back(d);
      grad = torch::zeros(shape, static_cast<torch::ScalarType>(ctx->saved_data["dtype"].toInt()));
    }
    return {group->all_to_all(grad.contiguous(), recv, send), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

torch::Tensor exchange_rows(Communicator* group, const torch::Tensor& rows, const std::vector<int64_t>& send,
                            const std::vector<int64_t>& recv) {
  return AllToAllRows::apply(rows, reinterpret_cast<int64_t>(group), send, recv);
}

torch::Tensor long_tensor(const std::vector<int64_t>& values) { return torch::tensor(values, torch::kLong); }

}  // namespace

ExpertTraffic& ExpertTraffic::operator+=(const ExpertTraffic& other) {
  tokens += other.tokens;
  rows_remote += other.rows_remote;
  rows_local += other.rows_local;
  max_ranks_per_token = std::max(max_ranks_per_token, other.max_ranks_per_token);
  hidden_bytes = std::max(hidden_bytes, other.hidden_bytes);
  return *this;
}

double ExpertTraffic::bytes_per_token() const {
  return tokens == 0 ? 0.0 : 2.0 * static_cast<double>(rows_remote * hidden_bytes) / static_cast<double>(tokens);
}

AllToAllExperts::AllToAllExperts(Communicator* group) : group_(group) {
  NEXTN_CHECK(group_ != nullptr, "AllToAllExperts needs an expert-parallel group");
}

torch::Tensor AllToAllExperts::run(RoutedExpertsImpl& experts, const torch::Tensor& x_flat, const Routing& routing) {
  const int ranks = group_->size(), me = group_->rank();
  const int64_t per_rank = experts.num_local_experts();
  NEXTN_CHECK(experts.num_experts() == per_rank * ranks && experts.first_expert() == me * per_rank,
              "expert layer holds experts [", experts.first_expert(), ", ", experts.first_expert() + per_rank,
              ") of ", experts.num_experts(), ", which is not rank ", me, "'s share over ", ranks, " ranks");
  const int64_t tokens = x_flat.size(0), hidden = x_flat.size(1);
  auto ids_tensor = routing.expert_ids.to(torch::kCPU).contiguous();
  const int64_t k = ids_tensor.size(1);
  const int64_t* ids = ids_tensor.data_ptr<int64_t>();

  // 2. Per destination: its tokens (once each, ascending) and their (row in that block, local expert,
  // index of the gate weight) triples.
  std::vector<std::vector<int64_t>> token_rows(ranks), pair_meta(ranks), weight_index(ranks);
  int64_t max_ranks = 0;
  {
    ScopedPhase phase("moe.ep.plan");
    for (int64_t n = 0; n < tokens; ++n) {
      int64_t ranks_of_token = 0;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t expert = ids[n * k + j];
        NEXTN_CHECK(expert >= 0 && expert < experts.num_experts(), "routed expert id ", expert, " out of range");
        const int64_t d = expert / per_rank;
        auto& rows = token_rows[d];
        if (rows.empty() || rows.back() != n) {
          rows.push_back(n);
          ++ranks_of_token;
        }
        pair_meta[d].push_back(static_cast<int64_t>(rows.size()) - 1);
        pair_meta[d].push_back(expert - d * per_rank);
        weight_index[d].push_back(n * k + j);
      }
      max_ranks = std::max(max_ranks, ranks_of_token);
    }
  }
  std::vector<int64_t> send_tokens(ranks), send_pairs(ranks), all_tokens, all_meta, all_weights;
  for (int d = 0; d < ranks; ++d) {
    send_tokens[d] = static_cast<int64_t>(token_rows[d].size());
    send_pairs[d] = static_cast<int64_t>(weight_index[d].size());
    all_tokens.insert(all_tokens.end(), token_rows[d].begin(), token_rows[d].end());
    all_meta.insert(all_meta.end(), pair_meta[d].begin(), pair_meta[d].end());
    all_weights.insert(all_weights.end(), weight_index[d].begin(), weight_index[d].end());
  }

  // 3. Counts first (one row of two per peer), then rows, pairs and weights.
  std::vector<int64_t> ones(ranks, 1), counts_flat;
  for (int d = 0; d < ranks; ++d) {
    counts_flat.push_back(send_tokens[d]);
    counts_flat.push_back(send_pairs[d]);
  }
  auto counts_in = group_->all_to_all(long_tensor(counts_flat).view({ranks, 2}), ones, ones);
  std::vector<int64_t> recv_tokens(ranks), recv_pairs(ranks);
  const auto received_counts = counts_in.accessor<int64_t, 2>();
  for (int p = 0; p < ranks; ++p) {
    recv_tokens[p] = received_counts[p][0];
    recv_pairs[p] = received_counts[p][1];
  }
  auto token_index = long_tensor(all_tokens).to(x_flat.device());
  auto x_recv = exchange_rows(group_, x_flat.index_select(0, token_index), send_tokens, recv_tokens);
  auto meta_recv = group_->all_to_all(long_tensor(all_meta).view({-1, 2}), send_pairs, recv_pairs);
  auto weights_send = routing.weights.reshape({-1}).index_select(0, long_tensor(all_weights).to(x_flat.device()));
  auto weights_recv = exchange_rows(group_, weights_send, send_pairs, recv_pairs);

  // 4. Local experts over what arrived: a pair's row is its block's offset plus its row in the block.
  std::vector<int64_t> rows_of_pairs, experts_of_pairs;
  {
    const int64_t* meta = meta_recv.data_ptr<int64_t>();
    int64_t block_offset = 0, pair = 0;
    for (int p = 0; p < ranks; ++p) {
      for (int64_t i = 0; i < recv_pairs[p]; ++i, ++pair) {
        NEXTN_CHECK(meta[2 * pair] >= 0 && meta[2 * pair] < recv_tokens[p] && meta[2 * pair + 1] >= 0 &&
                        meta[2 * pair + 1] < per_rank,
                    "expert dispatch from rank ", group_->global_rank(p), " names a row or expert out of range");
        rows_of_pairs.push_back(block_offset + meta[2 * pair]);
        experts_of_pairs.push_back(meta[2 * pair + 1]);
      }
      block_offset += recv_tokens[p];
    }
  }
  const int64_t received = x_recv.size(0);
  auto pair_experts = long_tensor(experts_of_pairs);
  auto order = compat::stable_argsort(pair_experts);
  auto counts = torch::bincount(pair_experts, /*weights=*/{}, per_rank);
  std::vector<int64_t> tokens_per_expert(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + per_rank);
  auto sorted_rows = long_tensor(rows_of_pairs).index_select(0, order).to(x_flat.device());
  torch::Tensor partial;
  {
    ScopedPhase phase("moe.experts");
    auto x_sorted = x_recv.index_select(0, sorted_rows);
    auto y_sorted = grouped_swiglu(x_sorted, experts.gate_up_proj.to(x_flat.scalar_type()),
                                   experts.down_proj.to(x_flat.scalar_type()), tokens_per_expert);
    auto w_sorted = weights_recv.index_select(0, order.to(x_flat.device())).to(y_sorted.scalar_type());
    partial = torch::zeros({received, hidden}, x_flat.options())
                  .index_add(0, sorted_rows, y_sorted * w_sorted.unsqueeze(1));
  }

  // 5. Partial sums home, added into their tokens.
  auto back = exchange_rows(group_, partial, recv_tokens, send_tokens);
  auto out = torch::zeros_like(x_flat).index_add(0, token_index, back.to(x_flat.scalar_type()));

  traffic_.tokens += tokens;
  traffic_.rows_local += send_tokens[me];
  traffic_.rows_remote += static_cast<int64_t>(all_tokens.size()) - send_tokens[me];
  traffic_.max_ranks_per_token = std::max(traffic_.max_ranks_per_token, max_ranks);
  traffic_.hidden_bytes = hidden * static_cast<int64_t>(x_flat.element_size());
  return out;
}

void check_expert_parallel_layout(const ModelConfig& config, int expert_parallel) {
  const int64_t experts = config.n_routed_experts, e = expert_parallel;
  NEXTN_CHECK(e >= 1, "--expert-parallel must be at least 1, got ", e);
  if (e == 1) return;
  NEXTN_CHECK(experts % e == 0, "--expert-parallel ", e, " does not divide n_routed_experts ", experts,
              ": each rank must hold the same number of experts");
  const int64_t per_rank = experts / e, per_group = experts / config.n_group;
  NEXTN_CHECK(per_group % per_rank == 0 || per_rank % per_group == 0, "--expert-parallel ", e, " puts ", per_rank,
              " experts on each rank, but the config's ", config.n_group, " expert groups have ", per_group,
              " experts each: a group must lie on whole ranks (or a rank hold whole groups) for node-limited routing");
}

std::vector<std::shared_ptr<AllToAllExperts>> shard_experts(DeepSeekV3Impl& model, Cluster& cluster) {
  std::vector<std::shared_ptr<AllToAllExperts>> exchanges;
  const int e = cluster.expert_parallel();
  if (e == 1) return exchanges;
  check_expert_parallel_layout(model.config(), e);
  const int64_t per_rank = model.config().n_routed_experts / e;
  for (auto& moe : model.moe_layers()) {
    auto exchange = std::make_shared<AllToAllExperts>(cluster.experts());
    moe->experts->shard(cluster.expert_rank() * per_rank, per_rank, exchange);
    exchanges.push_back(exchange);
  }
  return exchanges;
}

std::vector<torch::Tensor> expert_parameters(DeepSeekV3Impl& model) {
  std::vector<torch::Tensor> params;
  for (auto& moe : model.moe_layers()) {
    params.push_back(moe->experts->gate_up_proj);
    params.push_back(moe->experts->down_proj);
  }
  return params;
}

}  // namespace nextn::dist
