// AdamW against libtorch's own implementation, weight-decay groups, clipping, schedules.
#include <gtest/gtest.h>

#include <cmath>

#include "nextn/kernels/adamw_update.h"
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

// The one-pass update of float32 CPU parameters (kernels/adamw_update.h) against the rule
// computed in double from the same float32 state, step by step, and against the operators' path
// (AdamWOptions::one_pass = false). Sizes above the kernel's 64K-element chunk and not a multiple
// of its 8 lanes, so that threads, vector body and scalar tail all run.
TEST(AdamW, OnePassUpdateMatchesTheRuleAndTheOperators) {
  torch::manual_seed(43);
  auto w = torch::randn({70001}).requires_grad_(true);
  auto norm = torch::randn({37}).requires_grad_(true);
  auto w_ops = w.detach().clone().requires_grad_(true), norm_ops = norm.detach().clone().requires_grad_(true);
  const std::map<std::string, bool> decay = {{"w", true}, {"norm", false}};
  AdamWOptions options;
  options.weight_decay = 0.1;
  AdamW fused({{"w", w}, {"norm", norm}}, decay, options);
  options.one_pass = false;
  AdamW operators({{"w", w_ops}, {"norm", norm_ops}}, decay, options);
  const double lr = 0.01, b1 = options.beta1, b2 = options.beta2, eps = options.eps, wd = options.weight_decay;
  for (int step = 1; step <= 5; ++step) {
    for (auto* pair : {&w, &norm}) {
      auto g = torch::randn(pair->sizes());
      if (step == 2) g.narrow(0, 0, 5).zero_();  // v may be 0 where a gradient was 0 from the start
      pair->mutable_grad() = g;
    }
    w_ops.mutable_grad() = w.grad().clone();
    norm_ops.mutable_grad() = norm.grad().clone();
    // The rule in double from the float32 state before the step, and the size of each result's
    // terms (a sum that cancels is exact only to a rounding of its terms).
    std::vector<torch::Tensor> expected, scale;
    for (const auto& p : fused.parameters()) {
      auto pd = p.param.detach().to(torch::kDouble), g = p.param.grad().to(torch::kDouble);
      auto m0 = p.exp_avg.to(torch::kDouble);
      auto m = m0 * b1 + (1 - b1) * g;
      auto v = p.exp_avg_sq.to(torch::kDouble) * b2 + (1 - b2) * g * g;
      const double bc1 = 1 - std::pow(b1, step), bc2 = 1 - std::pow(b2, step);
      auto decayed = p.decay ? pd * (1 - lr * wd) : pd;
      auto update = lr / bc1 * m / (v.sqrt() / std::sqrt(bc2) + eps);
      expected.push_back(decayed - update);
      scale.push_back(decayed.abs() + update.abs());
      expected.push_back(m);
      scale.push_back(b1 * m0.abs() + (1 - b1) * g.abs());
      expected.push_back(v);
      scale.push_back(v);
    }
    fused.step(lr);
    operators.step(lr);
    size_t at = 0;
    for (size_t i = 0; i < fused.parameters().size(); ++i) {
      const auto& p = fused.parameters()[i];
      const auto& q = operators.parameters()[i];
      int which = 0;
      for (const torch::Tensor& t : {p.param.detach(), p.exp_avg, p.exp_avg_sq}) {
        const auto& e = expected[at];
        // The float32 roundings along the way (2^-24 = 6e-8 of the terms' size each: the update
        // of p has about a dozen, in m, v, the square root, two divisions and the constants).
        const double error = ((t.to(torch::kDouble) - e).abs() / (scale[at] + 1e-30)).max().item<double>();
        EXPECT_LT(error, 1e-6) << p.name << " tensor " << which << " step " << step;
        ++at;
        ++which;
      }
      // The operators' path rounds in other places: the two stay within a few float32 ulps.
      EXPECT_LT(testing::max_abs_diff(p.param.detach(), q.param.detach()), 2e-6) << p.name << " step " << step;
      EXPECT_TRUE(torch::allclose(p.exp_avg_sq, q.exp_avg_sq, 1e-6, 1e-12)) << p.name << " step " << step;
    }
  }
}

// Each element's update is the same whichever lanes it falls in (vector body, scalar tail): the
// result for an array equals the results for its elements updated one by one.
TEST(AdamW, OnePassUpdateIsTheSameInEveryLane) {
  torch::manual_seed(44);
  const int64_t n = 29;
  auto p = torch::randn({n}), g = torch::randn({n}), m = torch::randn({n}) * 0.1, v = torch::rand({n}) * 0.1;
  kernels::AdamWStepConstants c;
  c.decay = 0.999f;
  c.sqrt_bias_correction2 = 0.3f;
  c.step_size = 0.02f;
  auto p1 = p.clone(), m1 = m.clone(), v1 = v.clone();
  kernels::adamw_update(p.data_ptr<float>(), g.data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(), n, c);
  for (int64_t i = 0; i < n; ++i) {
    kernels::adamw_update(p1.data_ptr<float>() + i, g.data_ptr<float>() + i, m1.data_ptr<float>() + i,
                          v1.data_ptr<float>() + i, 1, c);
  }
  EXPECT_TRUE(torch::equal(p, p1));
  EXPECT_TRUE(torch::equal(m, m1));
  EXPECT_TRUE(torch::equal(v, v1));
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
  // Gradients the one-pass norm does not take (double here) and those it does, together.
  auto c = torch::zeros({1}, torch::kDouble).requires_grad_(true);
  c.mutable_grad() = torch::tensor({12.0}, torch::kDouble);
  b.mutable_grad() = torch::tensor({4.0f});
  a.mutable_grad() = torch::tensor({3.0f, 0.0f});
  EXPECT_NEAR(clip_grad_norm({a, b, c}, 0.0), 13.0, 1e-6);
}

// The clipping norm's sum of squares: against a double computation, and the same bits whatever
// the thread count (fixed blocks added in order).
TEST(ClipGradNorm, SumOfSquaresInOnePass) {
  torch::manual_seed(45);
  auto x = torch::randn({100003});
  const double expected = x.to(torch::kDouble).pow(2).sum().item<double>();
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const double one = kernels::sum_of_squares(x.data_ptr<float>(), x.numel());
  at::set_num_threads(2);
  const double two = kernels::sum_of_squares(x.data_ptr<float>(), x.numel());
  at::set_num_threads(threads);
  EXPECT_NEAR(one, expected, 1e-12 * expected);
  EXPECT_EQ(one, two);
  EXPECT_EQ(kernels::sum_of_squares(x.data_ptr<float>(), 0), 0.0);
  EXPECT_EQ(kernels::sum_of_squares(x.data_ptr<float>(), 3),
            x.narrow(0, 0, 3).to(torch::kDouble).pow(2).sum().item<double>());
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
