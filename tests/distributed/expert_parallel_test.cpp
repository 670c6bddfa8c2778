// Expert parallelism on two ranks against one process: an MoE layer whose experts are split over
// the ranks, tokens dispatched by all-to-all, must give the same expert choice for every token,
// the same output and the same gradients (input, router, each expert) as the whole layer in one
// process on the same tokens; node-limited routing must bound the ranks a token is sent to.
#include <gtest/gtest.h>

#include "nextn/distributed/expert_parallel.h"
#include "nextn/io/safetensors.h"
#include "nextn/model/moe.h"
#include "nextn/util/error.h"
#include "rank_processes.h"
#include "test_support.h"

namespace nextn {
namespace {

using testing::is_rank_worker;

constexpr int64_t kBatch = 6, kLength = 10;

struct Case {
  std::string name;
  int64_t n_group, topk_group, experts_per_token;
  torch::ScalarType dtype;
};

std::vector<Case> cases() {
  return {{"tiny-double", 4, 2, 4, torch::kDouble},
          {"tiny-float", 4, 2, 4, torch::kFloat},
          {"group-per-rank-M1", 2, 1, 3, torch::kDouble},
          {"group-per-rank-M2", 2, 2, 3, torch::kDouble},
          {"unrestricted", 1, 1, 3, torch::kDouble}};
}

ModelConfig case_config(const Case& c) {
  ModelConfig config = testing::tiny_config();  // 8 routed experts
  config.n_group = c.n_group;
  config.topk_group = c.topk_group;
  config.num_experts_per_tok = c.experts_per_token;
  return config;
}

// The same layer, input and output weighting on every rank and in the reference process.
struct LayerSetup {
  Moe moe{nullptr};
  torch::Tensor x, probe;
};

LayerSetup make_setup(const Case& c) {
  ModelConfig config = case_config(c);
  torch::manual_seed(11);
  LayerSetup s;
  s.moe = Moe(config);
  s.moe->to(c.dtype);
  for (auto& p : s.moe->parameters()) torch::nn::init::normal_(p, 0.0, 0.3);
  {
    torch::NoGradGuard no_grad;  // a bias that matters for selection, as after some training
    s.moe->gate->e_score_correction_bias.copy_(torch::linspace(-0.2, 0.2, config.n_routed_experts));
  }
  s.x = torch::randn({kBatch, kLength, config.hidden_size}, c.dtype);
  s.probe = torch::randn({kBatch, kLength, config.hidden_size}, c.dtype);
  return s;
}

// Forward and backward of (layer(x) * probe).sum() over rows [first, first + rows) of the batch.
std::map<std::string, torch::Tensor> run_layer(LayerSetup& s, int64_t first, int64_t rows) {
  auto x = s.x.narrow(0, first, rows).clone().requires_grad_();
  MoeStats stats;
  auto y = s.moe(x, &stats);
  (y * s.probe.narrow(0, first, rows)).sum().backward();
  return {{"output", y.detach()},
          {"expert_ids", stats.expert_ids},
          {"expert_counts", stats.expert_counts},
          {"grad_x", x.grad()},
          {"grad_gate", s.moe->gate->weight.grad()},
          {"grad_gate_up", s.moe->experts->gate_up_proj.grad()},
          {"grad_down", s.moe->experts->down_proj.grad()},
          {"grad_shared", s.moe->shared_experts->gate_proj->weight.grad()}};
}

TEST(RankWorker, ExpertParallelLayer) {
  if (!is_rank_worker()) GTEST_SKIP() << "runs as a rank of Distributed.ExpertParallelLayerEqualsOneProcess";
  auto owned = testing::worker_cluster(2);
  dist::Cluster& cluster = *owned;
  const int rank = cluster.rank();
  for (const Case& c : cases()) {
    LayerSetup s = make_setup(c);
    auto exchange = std::make_shared<dist::AllToAllExperts>(cluster.experts());
    const int64_t per_rank = case_config(c).n_routed_experts / 2;
    s.moe->experts->shard(rank * per_rank, per_rank, exchange);
    auto result = run_layer(s, rank * kBatch / 2, kBatch / 2);
    const dist::ExpertTraffic& t = exchange->traffic();
    result["traffic"] = torch::tensor({t.tokens, t.rows_remote, t.rows_local, t.max_ranks_per_token});
    std::vector<io::NamedTensor> tensors;
    for (auto& [name, tensor] : result) tensors.push_back(io::NamedTensor{name, tensor.contiguous()});
    io::write_safetensors(testing::worker_dir() + "/" + c.name + "-rank" + std::to_string(rank) + ".safetensors",
                          tensors);
  }
}

TEST(Distributed, ExpertParallelLayerEqualsOneProcess) {
  testing::TempDir dir("expert_parallel");
  testing::expect_all_passed(testing::run_ranks("RankWorker.ExpertParallelLayer", 2, dir.path()));
  if (HasFailure()) return;
  std::map<std::string, int64_t> remote_rows;
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    LayerSetup s = make_setup(c);
    auto whole = run_layer(s, 0, kBatch);
    const int64_t per_rank = case_config(c).n_routed_experts / 2;
    const double tolerance = c.dtype == torch::kDouble ? 1e-12 : 1e-5;
    auto relative = [](const torch::Tensor& got, const torch::Tensor& want) {
      return testing::max_abs_diff(got, want) / std::max(1e-30, want.abs().max().item<double>());
    };
    torch::Tensor gate_sum, shared_sum, counts_sum;
    int64_t remote = 0;
    for (int rank = 0; rank < 2; ++rank) {
      io::SafetensorsReader part(dir.file(c.name + "-rank" + std::to_string(rank) + ".safetensors"));
      auto rows = [&](const torch::Tensor& t) {
        return t.view({kBatch, kLength, -1}).narrow(0, rank * kBatch / 2, kBatch / 2).reshape({kBatch / 2 * kLength, -1});
      };
      // The same experts for every token, in the same order.
      EXPECT_TRUE(torch::equal(part.read("expert_ids"), rows(whole["expert_ids"])));
      EXPECT_LT(relative(part.read("output"), whole["output"].narrow(0, rank * kBatch / 2, kBatch / 2)), tolerance);
      EXPECT_LT(relative(part.read("grad_x"), whole["grad_x"].narrow(0, rank * kBatch / 2, kBatch / 2)), tolerance);
      // Each rank's experts received the gradient of every token routed to them, from both ranks.
      EXPECT_LT(relative(part.read("grad_gate_up"), whole["grad_gate_up"].narrow(0, rank * per_rank, per_rank)),
                tolerance);
      EXPECT_LT(relative(part.read("grad_down"), whole["grad_down"].narrow(0, rank * per_rank, per_rank)), tolerance);
      // Replicated weights see this rank's tokens only: the ranks' gradients add up to the whole.
      gate_sum = rank == 0 ? part.read("grad_gate") : gate_sum + part.read("grad_gate");
      shared_sum = rank == 0 ? part.read("grad_shared") : shared_sum + part.read("grad_shared");
      counts_sum = rank == 0 ? part.read("expert_counts") : counts_sum + part.read("expert_counts");
      auto traffic = part.read("traffic");
      EXPECT_EQ(traffic[0].item<int64_t>(), kBatch / 2 * kLength);
      remote += traffic[1].item<int64_t>();
      const int64_t max_ranks = traffic[3].item<int64_t>();
      // Node-limited routing across ranks: with a group per rank, at most M ranks per token.
      if (c.n_group == 2) {
        EXPECT_LE(max_ranks, c.topk_group);
      }
      if (c.name == "group-per-rank-M1") {
        EXPECT_EQ(max_ranks, 1);
      }
      if (c.name == "unrestricted") {
        EXPECT_EQ(max_ranks, 2);
      }
    }
    EXPECT_LT(relative(gate_sum, whole["grad_gate"]), tolerance);
    EXPECT_LT(relative(shared_sum, whole["grad_shared"]), tolerance);
    EXPECT_TRUE(torch::equal(counts_sum, whole["expert_counts"]));
    remote_rows[c.name] = remote;
  }
  // Capping the ranks a token may use cuts what crosses the network.
  EXPECT_LT(remote_rows["group-per-rank-M1"], remote_rows["group-per-rank-M2"]);
  EXPECT_LE(remote_rows["group-per-rank-M2"], remote_rows["unrestricted"]);
}

TEST(ExpertParallel, LayoutMustPutGroupsOnWholeRanks) {
  ModelConfig config = testing::tiny_config();  // 8 experts in 4 groups of 2
  dist::check_expert_parallel_layout(config, 1);
  dist::check_expert_parallel_layout(config, 2);  // 4 per rank: two whole groups
  dist::check_expert_parallel_layout(config, 8);  // 1 per rank: a group spans 2 ranks
  auto expect_error = [&](int e, const std::string& fragment) {
    try {
      dist::check_expert_parallel_layout(config, e);
      ADD_FAILURE() << "E = " << e << " must be refused";
    } catch (const Error& err) {
      EXPECT_NE(std::string(err.what()).find(fragment), std::string::npos) << err.what();
    }
  };
  expect_error(3, "does not divide n_routed_experts 8");
  config.n_routed_experts = 12;
  config.n_group = 4;  // groups of 3; E = 2 puts 6 on a rank: two whole groups, fine
  dist::check_expert_parallel_layout(config, 2);
  dist::check_expert_parallel_layout(config, 4);        // 3 per rank: one group each
  expect_error(6, "a group must lie on whole ranks");  // 2 per rank, groups of 3
}

}  // namespace
}  // namespace nextn
