// The fused head + cross-entropy against the unfused path (logits, then cross_entropy_sum), against
// finite differences, and through the whole objective of a model.
#include <gtest/gtest.h>

#include "nextn/model/cross_entropy.h"
#include "nextn/model/deepseek_v3.h"
#include "nextn/model/fused_head_loss.h"
#include "nextn/model/objective.h"
#include "test_support.h"

namespace nextn {
namespace {

using testing::tiny_config;

struct Case {
  torch::Tensor x, weight, targets;
};

Case random_case(int64_t rows, int64_t hidden, int64_t vocab, torch::ScalarType dtype, uint64_t seed) {
  torch::manual_seed(seed);
  Case c;
  c.x = torch::randn({rows, hidden}, torch::TensorOptions().dtype(dtype)).requires_grad_(true);
  c.weight = torch::randn({vocab, hidden}, torch::TensorOptions().dtype(dtype)).mul_(0.5).requires_grad_(true);
  c.targets = torch::randint(vocab, {rows}, torch::kLong);
  c.targets[1] = -100;  // an ignored row
  c.targets[rows - 1] = -100;
  return c;
}

// Loss, correct count and both gradients by a chosen path.
struct Result {
  double loss, correct;
  int64_t count;
  torch::Tensor grad_x, grad_weight;
};

Result run(const Case& c, bool fused, int64_t chunk_rows) {
  auto x = c.x.detach().clone().requires_grad_(true);
  auto w = c.weight.detach().clone().requires_grad_(true);
  CrossEntropySum s = fused ? fused_head_cross_entropy(x, w, c.targets, -100, chunk_rows)
                            : cross_entropy_sum(torch::mm(x, w.t()), c.targets, -100);
  (s.loss_sum * 0.75).backward();  // an upstream gradient other than 1
  return {s.loss_sum.item<double>(), s.correct.item<double>(), s.count, x.grad(), w.grad()};
}

TEST(FusedHeadLoss, EqualsLogitsThenCrossEntropyForEveryChunking) {
  Case c = random_case(11, 6, 13, torch::kDouble, 1);
  Result unfused = run(c, false, 0);
  for (int64_t chunk : {0, 1, 3, 11, 40}) {
    Result fused = run(c, true, chunk);
    EXPECT_NEAR(fused.loss, unfused.loss, 1e-12) << "chunk " << chunk;
    EXPECT_EQ(fused.correct, unfused.correct);
    EXPECT_EQ(fused.count, 9);
    EXPECT_TRUE(torch::allclose(fused.grad_x, unfused.grad_x, 1e-12, 1e-12)) << "chunk " << chunk;
    EXPECT_TRUE(torch::allclose(fused.grad_weight, unfused.grad_weight, 1e-12, 1e-12)) << "chunk " << chunk;
    // Ignored rows get no gradient.
    EXPECT_EQ(fused.grad_x[1].abs().sum().item<double>(), 0.0);
  }
}

TEST(FusedHeadLoss, GradientsMatchFiniteDifferences) {
  Case c = random_case(5, 4, 7, torch::kDouble, 2);
  Result fused = run(c, true, 2);
  auto loss_at = [&](const torch::Tensor& x, const torch::Tensor& w) {
    torch::NoGradGuard no_grad;
    return 0.75 * fused_head_cross_entropy(x, w, c.targets, -100, 2).loss_sum.item<double>();
  };
  const double h = 1e-6;
  for (int64_t i = 0; i < 5; ++i) {
    for (int64_t j = 0; j < 4; ++j) {
      auto plus = c.x.detach().clone(), minus = c.x.detach().clone();
      plus[i][j] += h;
      minus[i][j] -= h;
      const double numeric = (loss_at(plus, c.weight.detach()) - loss_at(minus, c.weight.detach())) / (2 * h);
      EXPECT_NEAR(fused.grad_x[i][j].item<double>(), numeric, 1e-7) << "x[" << i << "][" << j << "]";
    }
  }
  for (int64_t v = 0; v < 7; ++v) {
    for (int64_t j = 0; j < 4; ++j) {
      auto plus = c.weight.detach().clone(), minus = c.weight.detach().clone();
      plus[v][j] += h;
      minus[v][j] -= h;
      const double numeric = (loss_at(c.x.detach(), plus) - loss_at(c.x.detach(), minus)) / (2 * h);
      EXPECT_NEAR(fused.grad_weight[v][j].item<double>(), numeric, 1e-7) << "W[" << v << "][" << j << "]";
    }
  }
}

TEST(FusedHeadLoss, Float32AgreesToRoundingAndTheNoGradPathGivesTheSameLoss) {
  Case c = random_case(300, 32, 500, torch::kFloat, 3);
  Result unfused = run(c, false, 0), fused = run(c, true, 64);
  EXPECT_NEAR(fused.loss, unfused.loss, 1e-5 * std::abs(unfused.loss));
  EXPECT_EQ(fused.correct, unfused.correct);
  EXPECT_TRUE(torch::allclose(fused.grad_x, unfused.grad_x, 1e-4, 1e-6));
  EXPECT_TRUE(torch::allclose(fused.grad_weight, unfused.grad_weight, 1e-4, 1e-6));
  torch::NoGradGuard no_grad;
  EXPECT_EQ(fused_head_cross_entropy(c.x, c.weight, c.targets, -100, 64).loss_sum.item<double>(), fused.loss);
}

TEST(FusedHeadLoss, TheModelsObjectiveAndEveryGradientAreTheUnfusedOnes) {
  ModelConfig config = tiny_config();  // D = 2 sequential MTP modules
  auto objective_of = [&](bool fused) {
    torch::manual_seed(4);
    DeepSeekV3 model(config);
    model->to(torch::kDouble);
    torch::manual_seed(5);
    auto window = torch::randint(config.vocab_size, {3, 17}, torch::kLong);
    auto out = model->forward(window.narrow(1, 0, 16), ForwardOptions{true, true, fused});
    EXPECT_EQ(out.logits.defined(), !fused);
    ObjectiveOptions options;
    options.sequence_balance_alpha = 1e-4;
    auto segments = torch::zeros({3, 17}, torch::kLong);
    segments.narrow(1, 9, 8).fill_(1);  // a document boundary: some MTP targets are not counted
    ObjectiveOutput obj = compute_objective(out, window.narrow(1, 1, 16), segments, options);
    obj.total.backward();
    std::vector<torch::Tensor> grads;
    for (auto& p : model->parameters()) grads.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
    return std::make_pair(obj, grads);
  };
  auto [unfused, unfused_grads] = objective_of(false);
  auto [fused, fused_grads] = objective_of(true);
  EXPECT_NEAR(fused.total.item<double>(), unfused.total.item<double>(), 1e-12);
  ASSERT_EQ(fused.mtp_loss.size(), 2u);
  for (int k = 0; k < 2; ++k) {
    EXPECT_NEAR(fused.mtp_loss[k].item<double>(), unfused.mtp_loss[k].item<double>(), 1e-12);
    EXPECT_EQ(fused.mtp_tokens[k], unfused.mtp_tokens[k]);
    EXPECT_EQ(fused.mtp_accuracy[k].item<double>(), unfused.mtp_accuracy[k].item<double>());
  }
  ASSERT_EQ(fused_grads.size(), unfused_grads.size());
  for (size_t i = 0; i < fused_grads.size(); ++i) {
    ASSERT_EQ(fused_grads[i].defined(), unfused_grads[i].defined()) << "parameter " << i;
    if (fused_grads[i].defined()) {
      EXPECT_TRUE(torch::allclose(fused_grads[i], unfused_grads[i], 1e-9, 1e-12)) << "parameter " << i;
    }
  }
}

}  // namespace
}  // namespace nextn
