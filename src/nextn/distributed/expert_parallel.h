// Expert parallelism (DeepSeek-V3 section 3.2; the "all-to-all token dispatcher" of Megatron-LM
// and torchtitan): each MoE layer's routed experts are split evenly over the E ranks of an
// expert-parallel group, rank q holding experts [q*L, (q+1)*L) with L = n_routed_experts / E.
// Attention, dense layers, shared experts, the router, MTP modules and heads stay replicated.
//
// A forward, on every rank of the group at once:
//   1. route locally (replicated router, same bias everywhere);
//   2. for each destination rank, the tokens with at least one expert there, each sent ONCE
//      however many of its experts that rank holds (DeepSeek's dispatch: a token crosses to a
//      node once), with its (local expert, gate weight) pairs;
//   3. exchange the counts, then all-to-all the token rows, the pairs and the gate weights;
//   4. run the local experts on what arrived, sorted by expert as in one process, weight each
//      output and sum a token's outputs on this rank into one row;
//   5. the reverse all-to-all brings each token's partial sums home, where they are added.
// Autograd runs through both all-to-alls (the backward of an all-to-all is the reverse one) and
// through the gate weights. No token is dropped.
//
// Node-limited routing becomes real here: with n_group groups laid over the ranks (a group per
// rank when E == n_group; a group spanning E / n_group ranks; or n_group / E groups per rank),
// topk_group = M bounds the ranks a token is sent to, and so its bytes on the wire.
#pragma once

#include <memory>
#include <vector>

#include "nextn/distributed/cluster.h"
#include "nextn/model/deepseek_v3.h"

namespace nextn::dist {

// Counted over every forward of every MoE layer since the last reset.
struct ExpertTraffic {
  int64_t tokens = 0;           // tokens routed (this rank's)
  int64_t rows_remote = 0;      // token rows sent to other ranks (each way)
  int64_t rows_local = 0;       // token rows this rank's own experts took
  int64_t max_ranks_per_token = 0;
  int64_t hidden_bytes = 0;     // bytes of one token row
  ExpertTraffic& operator+=(const ExpertTraffic& other);
  // Bytes per token over the network, dispatch plus combine (rows each way).
  double bytes_per_token() const;
};

class AllToAllExperts : public ExpertExchange {
 public:
  explicit AllToAllExperts(Communicator* group);
  torch::Tensor run(RoutedExpertsImpl& experts, const torch::Tensor& x_flat, const Routing& routing) override;

  const ExpertTraffic& traffic() const { return traffic_; }
  void reset_traffic() { traffic_ = ExpertTraffic{}; }

 private:
  Communicator* group_;
  ExpertTraffic traffic_;
};

// nextn::Error when `config` cannot be split over E ranks: E must divide n_routed_experts, and
// the config's expert groups must lie on whole ranks (a group's experts on one rank or on whole
// ranks of their own) for node-limited routing to mean ranks.
void check_expert_parallel_layout(const ModelConfig& config, int expert_parallel);

// Shards every MoE layer of `model` (main model and MTP modules) over cluster.experts(): keeps
// this rank's experts and routes forwards through an all-to-all. Returns the layers' exchanges
// (for their traffic counts). Nothing happens when E == 1.
std::vector<std::shared_ptr<AllToAllExperts>> shard_experts(DeepSeekV3Impl& model, Cluster& cluster);

// The parameters that are sharded (each MoE layer's gate_up_proj and down_proj), for gradient
// averaging over expert_data and for the optimizer state a checkpoint gathers.
std::vector<torch::Tensor> expert_parameters(DeepSeekV3Impl& model);

}  // namespace nextn::dist
