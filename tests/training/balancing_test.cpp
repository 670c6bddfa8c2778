// Auxiliary-loss-free balancing: the update rule, micro-batch accumulation, and its effect.
#include <gtest/gtest.h>

#include "nextn/data/token_dataset.h"
#include "nextn/data/window_loader.h"
#include "nextn/model/deepseek_v3.h"
#include "nextn/model/load_balance.h"
#include "nextn/training/expert_bias.h"
#include "tiny_corpus.h"

namespace nextn {
namespace {

using testing::tiny_corpus;
using testing::tiny_training_config;

TEST(ExpertBias, UpdateFollowsTheSignOfTheLoadGap) {
  ModelConfig c = tiny_training_config();
  c.n_routed_experts = 4;
  c.n_group = 1;
  c.topk_group = 1;
  c.num_experts_per_tok = 2;
  DeepSeekV3 model(c);
  auto layers = model->moe_layers();
  auto gate_before = layers[0]->gate->weight.clone();
  // Mean load 5: expert 0 overloaded, expert 1 underloaded, 2 and 3 exactly even.
  std::vector<torch::Tensor> counts(1, torch::tensor({10, 0, 5, 5}, torch::kLong));
  update_expert_bias(layers, counts, 0.001, /*recenter=*/false);
  auto bias = layers[0]->gate->e_score_correction_bias;
  EXPECT_EQ(bias.scalar_type(), torch::kFloat);
  EXPECT_NEAR(bias[0].item<double>(), -0.001, 1e-9);
  EXPECT_NEAR(bias[1].item<double>(), 0.001, 1e-9);
  EXPECT_EQ(bias[2].item<double>(), 0.0);
  EXPECT_EQ(bias[3].item<double>(), 0.0);
  // Other layers (no counts given) are untouched; the gate weights never change.
  EXPECT_EQ(layers[1]->gate->e_score_correction_bias.abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(torch::equal(layers[0]->gate->weight, gate_before));
  counts[0] = torch::tensor({9, 1, 1, 1}, torch::kLong);
  update_expert_bias(layers, counts, 0.001, /*recenter=*/true);
  EXPECT_NEAR(bias.sum().item<double>(), 0.0, 1e-7);
}

TEST(ExpertBias, CountsOverMicroBatchesEqualOneBatchOfTheSameTokens) {
  ModelConfig c = tiny_training_config();
  torch::manual_seed(51);
  DeepSeekV3 model(c);
  torch::NoGradGuard no_grad;
  auto tokens = torch::randint(c.vocab_size, {4, 16}, torch::kLong);
  ExpertLoadAccumulator whole, parts;
  whole.add(model(tokens).moe_stats);
  for (int64_t row = 0; row < 4; ++row) parts.add(model(tokens.narrow(0, row, 1)).moe_stats);
  ASSERT_EQ(whole.counts().size(), parts.counts().size());
  for (size_t l = 0; l < whole.counts().size(); ++l) {
    EXPECT_TRUE(torch::equal(whole.counts()[l], parts.counts()[l])) << "layer " << l;
  }
  // Hence the same update.
  torch::manual_seed(52);
  DeepSeekV3 a(c);
  torch::manual_seed(52);
  DeepSeekV3 b(c);
  auto layers_a = a->moe_layers(), layers_b = b->moe_layers();
  update_expert_bias(layers_a, whole.counts(), 0.01, false);
  update_expert_bias(layers_b, parts.counts(), 0.01, false);
  for (size_t l = 0; l < layers_a.size(); ++l) {
    EXPECT_TRUE(torch::equal(layers_a[l]->gate->e_score_correction_bias, layers_b[l]->gate->e_score_correction_bias));
  }
}

// MaxVio_batch averaged over MoE layers for a batch.
double mean_max_violation(const ModelOutput& out) {
  double sum = 0;
  for (const auto& s : out.moe_stats) sum += max_violation(s.expert_counts);
  return sum / static_cast<double>(out.moe_stats.size());
}

// Runs the bias update alone (no gradient step) on real batches from a routing-skewed start.
std::pair<double, double> max_vio_before_and_after(double gamma) {
  ModelConfig c = tiny_training_config();
  torch::manual_seed(53);
  DeepSeekV3 model(c);
  torch::NoGradGuard no_grad;
  // Skew: every token's hidden state gets a shared direction u (through the embedding), and
  // experts 0 and 1 of every layer align their gate rows with it, so they win every token.
  auto u = torch::randn({c.hidden_size});
  u = u / u.norm();
  model->embed_tokens->weight.add_(u * 0.03);
  for (auto& moe : model->moe_layers()) {
    auto w = moe->gate->weight;
    w.normal_(0.0, 0.3);
    w[0].copy_(u * 2.0);
    w[1].copy_(u * 2.0);
  }
  auto dataset = data::TokenDataset::open(tiny_corpus().dataset_dir);
  data::WindowLoader loader(dataset, data::Split::kTrain, 8, 32, 7);
  auto layers = model->moe_layers();
  double first = 0, last = 0;
  for (int step = 0; step < 80; ++step) {
    auto batch = loader.next();
    ModelOutput out = model(batch.tokens.narrow(1, 0, 32));
    if (step == 0) first = mean_max_violation(out);
    if (step >= 70) last += mean_max_violation(out) / 10.0;
    ExpertLoadAccumulator loads;
    loads.add(out.moe_stats);
    update_expert_bias(layers, loads.counts(), gamma, false);
  }
  return {first, last};
}

TEST(ExpertBias, BalancingLowersMaxVioFromASkewedStartAndNoBalancingDoesNot) {
  auto [skewed, balanced] = max_vio_before_and_after(0.02);
  auto [skewed_again, unbalanced] = max_vio_before_and_after(0.0);
  EXPECT_GT(skewed, 0.5);  // the skew is real: experts 0 and 1 take far more than their share
  EXPECT_NEAR(skewed, skewed_again, 1e-12);
  EXPECT_LT(balanced, 0.5 * skewed);
  EXPECT_GT(unbalanced, 0.8 * skewed);
}

}  // namespace
}  // namespace nextn
