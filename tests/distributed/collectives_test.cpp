// c10d collectives through nextn's Communicator, and data-parallel gradient averaging in buckets,
// on two ranks over loopback (processes of this executable).
#include <gtest/gtest.h>

#include "nextn/distributed/cluster.h"
#include "nextn/distributed/gradient_sync.h"
#include "nextn/util/error.h"
#include "rank_processes.h"
#include "test_support.h"

namespace nextn {
namespace {

using testing::is_rank_worker;

TEST(RankWorker, Collectives) {
  if (!is_rank_worker()) GTEST_SKIP() << "runs as a rank of Distributed.Collectives";
  auto owned = testing::worker_cluster(2);
  dist::Cluster& cluster = *owned;
  ASSERT_EQ(cluster.world_size(), 2);
  const int rank = cluster.rank(), other = 1 - rank;
  dist::Communicator& world = *cluster.world();
  ASSERT_NE(cluster.experts(), nullptr);
  EXPECT_EQ(cluster.expert_data(), nullptr);  // W == E: no other rank holds the same experts

  auto sum = torch::tensor({1.0 + rank, 10.0 * rank});
  world.all_reduce_sum(sum);
  EXPECT_TRUE(torch::equal(sum, torch::tensor({3.0, 10.0})));
  auto most = torch::tensor({int64_t{rank}, int64_t{5 - rank}});
  world.all_reduce_max(most);
  EXPECT_TRUE(torch::equal(most, torch::tensor({int64_t{1}, int64_t{5}})));

  auto value = torch::full({3}, 7.0 + rank);
  world.broadcast(value, 1);
  EXPECT_TRUE(torch::equal(value, torch::full({3}, 8.0)));

  auto gathered = world.all_gather(torch::full({2}, static_cast<float>(rank)));
  ASSERT_EQ(gathered.size(), 2u);
  EXPECT_TRUE(torch::equal(gathered[1], torch::full({2}, 1.0f)));
  auto at_root = world.gather(torch::full({2}, static_cast<float>(rank + 4)), 0);
  if (rank == 0) {
    ASSERT_EQ(at_root.size(), 2u);
    EXPECT_TRUE(torch::equal(at_root[1], torch::full({2}, 5.0f)));
  } else {
    EXPECT_TRUE(at_root.empty());
  }

  // Uneven splits, empty ones included: rank 0 keeps 1 row and sends none; rank 1 sends 3 and keeps 2.
  const std::vector<int64_t> send = rank == 0 ? std::vector<int64_t>{1, 0} : std::vector<int64_t>{3, 2};
  auto received_counts = world.exchange_counts(send);
  const std::vector<int64_t> expected_counts = rank == 0 ? std::vector<int64_t>{1, 3} : std::vector<int64_t>{0, 2};
  EXPECT_EQ(received_counts, expected_counts);
  auto rows = torch::arange(send[0] + send[1], torch::kFloat).unsqueeze(1).repeat({1, 4}) + 100.0 * rank;
  world.take_stats();
  auto got = world.all_to_all(rows, send, received_counts);
  if (rank == 0) {
    ASSERT_EQ(got.size(0), 4);
    EXPECT_EQ(got[0][0].item<float>(), 0.0f);
    EXPECT_EQ(got[1][0].item<float>(), 100.0f);
    EXPECT_EQ(got[3][3].item<float>(), 102.0f);
  } else {
    ASSERT_EQ(got.size(0), 2);
    EXPECT_EQ(got[0][0].item<float>(), 103.0f);
    EXPECT_EQ(got[1][2].item<float>(), 104.0f);
  }
  dist::CommStats stats = world.take_stats();
  EXPECT_EQ(stats[dist::Collective::kAllToAll].calls, 1);
  EXPECT_EQ(stats[dist::Collective::kAllToAll].bytes, send[other] * 4 * 4);  // rows to the other rank only
  try {
    world.all_to_all(rows, {1, 1}, received_counts);
    ADD_FAILURE() << "mismatched send counts must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("send counts add up to"), std::string::npos) << e.what();
  }
  world.barrier();
}

TEST(RankWorker, GradientBuckets) {
  if (!is_rank_worker()) GTEST_SKIP() << "runs as a rank of Distributed.GradientBuckets";
  auto owned = testing::worker_cluster(2);
  dist::Cluster& cluster = *owned;
  const double r = cluster.rank() + 1.0;
  torch::manual_seed(3);  // the same parameters and coefficients on both ranks
  std::vector<torch::Tensor> replicated = {torch::randn({5, 3}).requires_grad_(), torch::randn({17}).requires_grad_(),
                                           torch::randn({2, 2, 2}).requires_grad_(), torch::randn({40}).requires_grad_()};
  std::vector<torch::Tensor> experts = {torch::randn({3, 4}).requires_grad_(), torch::randn({9}).requires_grad_()};
  std::vector<torch::Tensor> coefficients;
  for (const auto* list : {&replicated, &experts}) {
    for (const auto& p : *list) coefficients.push_back(torch::randn_like(p));
  }
  // 64-byte buckets: the replicated parameters take several.
  dist::GradientSync sync(replicated, cluster.gradients(), experts, cluster.expert_data(), cluster.world_size(), 64);
  EXPECT_GE(sync.num_buckets(), 4);
  auto loss_of = [&](double scale) {
    torch::Tensor loss = torch::zeros({});
    size_t i = 0;
    for (const auto* list : {&replicated, &experts}) {
      for (const auto& p : *list) loss = loss + (p * p * coefficients[i++]).sum() * scale;
    }
    return loss;
  };
  // Two micro-batches; only the last backward is armed. Rank r's gradient of each parameter:
  // 2 p c (r + 0.5 r) = 3 r p c.
  loss_of(r).backward();
  sync.arm();
  loss_of(0.5 * r).backward();
  sync.finish();
  EXPECT_GT(sync.buckets_started_in_backward(), 0);  // some all-reduces overlapped the backward
  size_t i = 0;
  for (const auto& p : replicated) {  // mean over ranks of 3 r p c = 3 * 1.5 * p c
    EXPECT_LT(testing::max_abs_diff(p.grad(), 4.5 * p.detach() * coefficients[i++]), 1e-5);
  }
  for (const auto& p : experts) {  // no other holder: this rank's own gradient / world
    EXPECT_LT(testing::max_abs_diff(p.grad(), 1.5 * r * p.detach() * coefficients[i++]), 1e-5);
  }
}

TEST(Distributed, Collectives) {
  testing::TempDir dir("collectives");
  testing::expect_all_passed(testing::run_ranks("RankWorker.Collectives", 2, dir.path()));
}

TEST(Distributed, GradientBuckets) {
  testing::TempDir dir("buckets");
  testing::expect_all_passed(testing::run_ranks("RankWorker.GradientBuckets", 2, dir.path()));
}

TEST(Distributed, ExpertParallelMustDivideTheWorld) {
  dist::LaunchEnv env;
  env.world_size = 2;  // never connects: the check comes first
  dist::ClusterOptions options;
  options.expert_parallel = 3;
  try {
    dist::Cluster cluster(env, options);
    ADD_FAILURE() << "E = 3 over 2 ranks must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--expert-parallel 3 does not divide the world size 2"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace nextn
