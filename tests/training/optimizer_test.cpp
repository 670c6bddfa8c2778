// AdamW against libtorch's own implementation, weight-decay groups, clipping, schedules.
#include <gtest/gtest.h>

#include <cmath>

#include "nextn/training/adamw.h"
#include "nextn/training/schedules.h"
#include "nextn/training/train_options.h"
#include "nextn/util/error.h"
#include "test_support.h"

namespace nextn {
namespace {

TEST(AdamW, MatchesLibtorchAdamWOverSeveralSteps) {
  torch::manual_seed(41);
  auto a = torch::randn({5, 3}, torch::kDouble).requires_grad_(true);
  auto b = a.detach().clone().requires_grad_(true);
  AdamWOptions options;
  options.beta1 = 0.8;
  options.beta2 = 0.95;
  options.eps = 1e-7;
  options.weight_decay = 0.1;
  AdamW ours({{"a", a}}, {{"a", true}}, options);
  torch::optim::AdamW reference({b}, torch::optim::AdamWOptions(0.01).betas({0.8, 0.95}).eps(1e-7).weight_decay(0.1));
  for (int step = 0; step < 6; ++step) {
    auto grad = torch::randn({5, 3}, torch::kDouble);
    a.mutable_grad() = grad.clone();
    b.mutable_grad() = grad.clone();
    ours.step(0.01);
    reference.step();
    EXPECT_LT(testing::max_abs_diff(a, b), 1e-14) << "step " << step;
  }
  EXPECT_EQ(ours.steps_taken(), 6);
}

TEST(AdamW, NoDecayGroupAndStateRoundTrip) {
  auto w = torch::ones({2, 2}).requires_grad_(true);
  auto norm = torch::ones({2}).requires_grad_(true);
  auto embedding = torch::ones({4, 2}).requires_grad_(true);
  std::vector<std::pair<std::string, torch::Tensor>> named = {
      {"layers.0.o_proj.weight", w}, {"layers.0.input_layernorm.weight", norm}, {"embed_tokens.weight", embedding}};
  auto decay = default_weight_decay(named, /*decay_embedding=*/false);
  EXPECT_TRUE(decay["layers.0.o_proj.weight"]);
  EXPECT_FALSE(decay["layers.0.input_layernorm.weight"]);
  EXPECT_FALSE(decay["embed_tokens.weight"]);
  EXPECT_TRUE(default_weight_decay(named, true)["embed_tokens.weight"]);

  AdamWOptions options;
  options.weight_decay = 0.5;
  AdamW optimizer(named, decay, options);
  for (auto& [name, p] : named) p.mutable_grad() = torch::zeros_like(p);
  optimizer.step(0.1);  // zero gradient: only decay moves weights
  EXPECT_NEAR(w[0][0].item<double>(), 1.0 - 0.1 * 0.5, 1e-7);
  EXPECT_EQ(norm[0].item<double>(), 1.0);
  EXPECT_EQ(embedding[0][0].item<double>(), 1.0);

  std::map<std::string, torch::Tensor> state;
  for (auto& [name, t] : optimizer.state_tensors()) state[name] = t.clone() + 1;
  AdamW restored(named, decay, options);
  restored.load_state(state, 7);
  EXPECT_EQ(restored.steps_taken(), 7);
  EXPECT_TRUE(torch::equal(restored.state_tensors()[0].second, state["layers.0.o_proj.weight.exp_avg"]));
  state.erase("embed_tokens.weight.exp_avg_sq");
  EXPECT_THROW(restored.load_state(state, 7), Error);
}

TEST(ClipGradNorm, ScalesToTheLimitAndReportsTheNorm) {
  auto a = torch::zeros({2}).requires_grad_(true);
  auto b = torch::zeros({1}).requires_grad_(true);
  a.mutable_grad() = torch::tensor({3.0f, 0.0f});
  b.mutable_grad() = torch::tensor({4.0f});
  EXPECT_NEAR(clip_grad_norm({a, b}, 1.0), 5.0, 1e-6);
  EXPECT_NEAR(a.grad()[0].item<double>(), 0.6, 1e-5);
  EXPECT_NEAR(b.grad()[0].item<double>(), 0.8, 1e-5);
  b.mutable_grad() = torch::tensor({std::nanf("")});
  EXPECT_TRUE(std::isnan(clip_grad_norm({a, b}, 1.0)));
}

TEST(Schedules, WarmupCosineAndWsd) {
  LrSchedule cosine{LrShape::kCosine, 1.0, 0.1, 10, 110, 0.2};
  EXPECT_NEAR(cosine.at(0), 0.1, 1e-12);   // (0 + 1) / 10
  EXPECT_NEAR(cosine.at(9), 1.0, 1e-12);
  EXPECT_NEAR(cosine.at(10), 1.0, 1e-12);  // cosine starts at the peak
  EXPECT_NEAR(cosine.at(60), 0.1 + 0.45 * (1 + std::cos(M_PI * 0.5)), 1e-12);
  EXPECT_NEAR(cosine.at(110), 0.1, 1e-12);
  LrSchedule wsd{LrShape::kWsd, 1.0, 0.0, 0, 100, 0.2};
  EXPECT_NEAR(wsd.at(50), 1.0, 1e-12);
  EXPECT_NEAR(wsd.at(79), 1.0, 1e-12);
  EXPECT_NEAR(wsd.at(90), 0.5, 1e-12);
  EXPECT_NEAR(wsd.at(100), 0.0, 1e-12);
  SwitchSchedule lambda{0.3, 0.1, 0.75};
  EXPECT_EQ(lambda.at(74, 100), 0.3);
  EXPECT_EQ(lambda.at(75, 100), 0.1);
}

TEST(TrainOptions, JsonRoundTripAndValidation) {
  TrainOptions o;
  o.data_dir = "d";
  o.run_dir = "r";
  o.lr_shape = LrShape::kWsd;
  o.balance = BalanceMode::kAuxLoss;
  o.mtp_lambda = {0.5, 0.2, 0.6};
  o.seed = 99;
  TrainOptions back = train_options_from_json(train_options_to_json(o));
  EXPECT_EQ(train_options_to_json(back).dump(), train_options_to_json(o).dump());
  auto broken = train_options_to_json(o);
  broken.erase("seq_len");
  EXPECT_THROW(train_options_from_json(broken), Error);
  o.batch_size = 0;
  EXPECT_THROW(o.validate(), Error);
}

}  // namespace
}  // namespace nextn
