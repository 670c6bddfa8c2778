// Decoding's few float32 rows take plain-loop kernels in RMSNorm, routing and MLA attention; the
// libtorch formulas stay the reference (and what training runs). Each dispatch against its
// reference, and the conditions under which the reference must keep running (autograd).
#include <gtest/gtest.h>

#include <cmath>

#include "nextn/model/linear.h"
#include "nextn/model/mla_attention.h"
#include "nextn/model/rms_norm.h"
#include "nextn/model/router.h"
#include "nextn/util/error.h"
#include "test_support.h"

namespace nextn {
namespace {

using testing::max_abs_diff;
using testing::tiny_config;

TEST(DecodingKernels, RmsNormOfFewRowsEqualsTheReference) {
  torch::manual_seed(41);
  RMSNorm norm(48, 1e-6);
  torch::nn::init::normal_(norm->weight, 1.0, 0.3);
  torch::NoGradGuard no_grad;
  for (auto shape : {std::vector<int64_t>{1, 1, 48}, {1, 4, 48}, {2, 2, 48}, {3, 48}}) {
    auto x = torch::randn(shape) * 2;
    ASSERT_TRUE(takes_few_rows_kernels(x, norm->weight, 48)) << x.sizes();
    auto fast = norm(x);
    auto reference = rms_norm_reference(x, norm->weight, 1e-6);
    ASSERT_EQ(fast.sizes(), x.sizes());
    EXPECT_LT(max_abs_diff(fast, reference), 2e-6) << x.sizes();
    EXPECT_GT(fast.abs().max().item<double>(), 0.1);
  }
}

TEST(DecodingKernels, FewRowsUnderAutogradTakeTheReference) {
  // In grad mode a one-row forward must reach the graph, whichever side wants the gradient.
  for (bool x_grad : {true, false}) {
    for (bool weight_grad : {true, false}) {
      if (!x_grad && !weight_grad) continue;
      RMSNorm norm(8, 1e-6);
      norm->weight.set_requires_grad(weight_grad);
      auto x = torch::randn({1, 1, 8}).set_requires_grad(x_grad);
      EXPECT_FALSE(takes_few_rows_kernels(x, norm->weight, 8));
      norm(x).pow(2).sum().backward();
      EXPECT_EQ(x.grad().defined(), x_grad);
      if (weight_grad) {
        EXPECT_GT(norm->weight.grad().abs().sum().item<double>(), 0.0);
      }
      if (x_grad) {
        EXPECT_GT(x.grad().abs().sum().item<double>(), 0.0);
      }
    }
  }
  ModelConfig c = tiny_config();
  MoeGate gate(c);
  torch::nn::init::normal_(gate->weight, 0.0, 0.5);
  Routing routing = gate(torch::randn({2, c.hidden_size}));
  routing.weights.sum().backward();
  ASSERT_TRUE(gate->weight.grad().defined());
  EXPECT_GT(gate->weight.grad().abs().sum().item<double>(), 0.0);
}

TEST(DecodingKernels, OnlyDecodingsRowsTakeTheKernels) {
  auto weight = torch::ones({8});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(takes_few_rows_kernels(torch::zeros({4, 8}), weight, 8));
  EXPECT_FALSE(takes_few_rows_kernels(torch::zeros({5, 8}), weight, 8));                    // a prefill
  EXPECT_FALSE(takes_few_rows_kernels(torch::zeros({2, 8}, torch::kDouble), weight, 8));     // another type
  EXPECT_FALSE(takes_few_rows_kernels(torch::zeros({8, 2}).t(), weight, 8));                 // strided rows
  EXPECT_FALSE(takes_few_rows_kernels(torch::zeros({2, 7}), weight, 8));                     // another width
}

ModelConfig gate_config(int64_t experts, int64_t groups, int64_t topk_group, int64_t k, bool normalise) {
  ModelConfig c = tiny_config();
  c.n_routed_experts = experts;
  c.n_group = groups;
  c.topk_group = topk_group;
  c.num_experts_per_tok = k;
  c.norm_topk_prob = normalise;
  c.validate();
  return c;
}

TEST(DecodingKernels, FewTokenRoutingEqualsRouteTokens) {
  torch::manual_seed(42);
  for (auto [experts, groups, topk_group, k] : std::vector<std::array<int64_t, 4>>{
           {8, 4, 2, 4}, {16, 4, 1, 2}, {16, 8, 4, 8}, {12, 1, 1, 3}, {24, 4, 1, 3}, {16, 4, 2, 2}, {8, 2, 1, 1}}) {
    for (bool normalise : {true, false}) {
      ModelConfig c = gate_config(experts, groups, topk_group, k, normalise);
      for (int64_t tokens = 1; tokens <= 4; ++tokens) {
        auto scores = torch::rand({tokens, experts});
        auto bias = torch::randn({experts}) * 0.1;
        Routing reference = route_tokens(scores, bias, c);
        Routing fast = route_few_tokens(scores, bias, c);
        EXPECT_TRUE(torch::equal(fast.expert_ids, reference.expert_ids))
            << experts << "/" << groups << "/" << topk_group << "/" << k << "\n"
            << fast.expert_ids << "\n"
            << reference.expert_ids;
        EXPECT_LT(max_abs_diff(fast.weights, reference.weights), 1e-6);
      }
    }
  }
}

TEST(DecodingKernels, FewTokenRoutingBreaksTiesTowardsLowerIndices) {
  ModelConfig c = gate_config(8, 4, 2, 4, true);
  auto scores = torch::full({1, 8}, 0.5f);
  Routing r = route_few_tokens(scores, torch::zeros({8}), c);
  // All groups tie, so groups 0 and 1 are kept, and within them experts in index order.
  EXPECT_TRUE(torch::equal(r.expert_ids, torch::tensor({{0, 1, 2, 3}}, torch::kLong))) << r.expert_ids;
  EXPECT_LT(max_abs_diff(r.weights, torch::full({1, 4}, 0.25 * c.routed_scaling_factor)), 1e-7);
}

TEST(DecodingKernels, FewTokenRoutingWithNaNFallsBackToRouteTokens) {
  ModelConfig c = gate_config(8, 4, 2, 4, true);
  auto scores = torch::rand({2, 8});
  scores[1][6] = std::nanf("");
  auto bias = torch::zeros({8});
  EXPECT_TRUE(torch::equal(route_few_tokens(scores, bias, c).expert_ids, route_tokens(scores, bias, c).expert_ids));
  EXPECT_THROW(route_few_tokens(scores, torch::zeros({7}), c), Error);
}

TEST(DecodingKernels, MoeGateOfFewRowsRoutesLikeTheReference) {
  ModelConfig c = gate_config(16, 4, 2, 4, true);
  torch::manual_seed(43);
  MoeGate gate(c);
  torch::nn::init::normal_(gate->weight, 0.0, 0.5);
  gate->e_score_correction_bias.normal_(0.0, 0.1);
  torch::NoGradGuard no_grad;
  auto x = torch::randn({3, c.hidden_size});
  ASSERT_TRUE(takes_few_rows_kernels(x, gate->weight, c.hidden_size));
  Routing fast = gate(x);
  Routing reference = route_tokens(torch::sigmoid(torch::mm(x, gate->weight.t())), gate->e_score_correction_bias, c);
  EXPECT_TRUE(torch::equal(fast.expert_ids, reference.expert_ids));
  EXPECT_LT(max_abs_diff(fast.weights, reference.weights), 1e-6);
}

}  // namespace
}  // namespace nextn
