// Evaluation on two expert-parallel ranks against one process: the ranks split each batch and add
// their sums, and a rank whose share of the last batch is empty still takes part in the
// all-to-alls (with a discarded row), so every rank returns one process's figures.
#include <gtest/gtest.h>

#include "nextn/data/window_loader.h"
#include "nextn/distributed/expert_parallel.h"
#include "nextn/training/evaluator.h"
#include "rank_processes.h"
#include "training/tiny_corpus.h"

namespace nextn {
namespace {

// A window length whose validation split has an odd number of windows N, and the per-rank batch
// b = (N - 1) / 2: two batches, of N - 1 rows and of 1 row (rank 1's share of it is empty).
std::pair<int64_t, int64_t> odd_split(const data::TokenDataset& dataset) {
  for (int64_t seq_len = 16; seq_len < 64; ++seq_len) {
    const int64_t windows = data::EvalWindows(dataset, data::Split::kValidation, 1, seq_len).num_windows();
    if (windows % 2 == 1 && windows > 2) return {seq_len, (windows - 1) / 2};
  }
  ADD_FAILURE() << "no window length gives an odd number of validation windows";
  return {16, 1};
}

DeepSeekV3 tiny_model() {
  torch::manual_seed(5);
  return DeepSeekV3(testing::tiny_training_config());
}

TEST(RankWorker, Evaluation) {
  if (!testing::is_rank_worker()) GTEST_SKIP() << "runs as a rank of Distributed.EvaluationEqualsOneProcess";
  auto owned = testing::worker_cluster(2);
  dist::Cluster& cluster = *owned;
  auto dataset = data::TokenDataset::open(testing::tiny_corpus().dataset_dir);
  auto [seq_len, batch] = odd_split(dataset);
  DeepSeekV3 model = tiny_model();
  dist::shard_experts(*model, cluster);
  EvalOptions eval;
  eval.batch_size = batch;
  eval.seq_len = seq_len;
  EvalMetrics m = evaluate(*model, dataset, eval, &cluster);
  io::write_file_atomic(testing::worker_dir() + "/eval-rank" + std::to_string(cluster.rank()) + ".json",
                        to_json(m).dump());
}

TEST(Distributed, EvaluationEqualsOneProcess) {
  testing::TempDir dir("dist_eval");
  testing::expect_all_passed(testing::run_ranks("RankWorker.Evaluation", 2, dir.path()));
  if (HasFailure()) return;
  auto dataset = data::TokenDataset::open(testing::tiny_corpus().dataset_dir);
  auto [seq_len, batch] = odd_split(dataset);
  DeepSeekV3 model = tiny_model();
  EvalOptions eval;
  eval.batch_size = 2 * batch;
  eval.seq_len = seq_len;
  nlohmann::json want = to_json(evaluate(*model, dataset, eval));
  for (int rank = 0; rank < 2; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    auto got = nlohmann::json::parse(io::read_file(dir.file("eval-rank" + std::to_string(rank) + ".json")));
    EXPECT_EQ(got["tokens"], want["tokens"]);
    // float32 losses summed in another order: equal to a few roundings (relative 1e-6).
    auto near = [](const nlohmann::json& a, const nlohmann::json& b) {
      return std::abs(a.get<double>() - b.get<double>()) <= 1e-6 * std::abs(b.get<double>());
    };
    EXPECT_TRUE(near(got["main_loss"], want["main_loss"])) << got["main_loss"] << " vs " << want["main_loss"];
    EXPECT_NEAR(got["main_accuracy"].get<double>(), want["main_accuracy"].get<double>(), 1e-12);
    for (size_t k = 0; k < want["mtp_loss"].size(); ++k) {
      EXPECT_TRUE(near(got["mtp_loss"][k], want["mtp_loss"][k])) << got["mtp_loss"][k] << " vs " << want["mtp_loss"][k];
      EXPECT_NEAR(got["mtp_accuracy"][k].get<double>(), want["mtp_accuracy"][k].get<double>(), 1e-12);
    }
    EXPECT_EQ(got["max_vio_global"], want["max_vio_global"]);
  }
}

}  // namespace
}  // namespace nextn
