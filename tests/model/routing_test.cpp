// Routing: DeepSeek-V3's noaux_tc rule against a plain-loop reference, the bias's role, group
// limits, and the sorted dispatch of tokens to experts against a per-token loop.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "nextn/kernels/few_rows_matmul.h"
#include "nextn/model/linear.h"
#include "nextn/model/load_balance.h"
#include "nextn/model/moe.h"
#include "nextn/model/routed_experts.h"
#include "nextn/model/router.h"
#include "nextn/util/error.h"
#include "test_support.h"

namespace nextn {
namespace {

using testing::max_abs_diff;
using testing::tiny_config;

// The routing rule written out per token with std:: containers, independent of route_tokens.
std::set<int64_t> reference_selection(const std::vector<double>& biased, const ModelConfig& c) {
  const int64_t per_group = c.n_routed_experts / c.n_group;
  const int64_t per_group_k = c.group_score_topk;
  std::vector<std::pair<double, int64_t>> group_scores;
  for (int64_t g = 0; g < c.n_group; ++g) {
    std::vector<double> members(biased.begin() + g * per_group, biased.begin() + (g + 1) * per_group);
    std::sort(members.rbegin(), members.rend());
    group_scores.push_back({std::accumulate(members.begin(), members.begin() + per_group_k, 0.0), g});
  }
  std::sort(group_scores.rbegin(), group_scores.rend());
  std::vector<std::pair<double, int64_t>> allowed;
  for (int64_t r = 0; r < c.topk_group; ++r) {
    int64_t g = group_scores[r].second;
    for (int64_t e = g * per_group; e < (g + 1) * per_group; ++e) allowed.push_back({biased[e], e});
  }
  std::sort(allowed.rbegin(), allowed.rend());
  std::set<int64_t> chosen;
  for (int64_t r = 0; r < c.num_experts_per_tok; ++r) chosen.insert(allowed[r].second);
  return chosen;
}

std::set<int64_t> row_set(const torch::Tensor& ids, int64_t row) {
  std::set<int64_t> s;
  for (int64_t j = 0; j < ids.size(1); ++j) s.insert(ids[row][j].item<int64_t>());
  return s;
}

void expect_routing_matches_reference(const torch::Tensor& scores, const torch::Tensor& bias, const ModelConfig& c) {
  Routing r = route_tokens(scores, bias, c);
  ASSERT_EQ(r.expert_ids.sizes(), torch::IntArrayRef({scores.size(0), c.num_experts_per_tok}));
  for (int64_t t = 0; t < scores.size(0); ++t) {
    std::vector<double> biased(c.n_routed_experts);
    for (int64_t e = 0; e < c.n_routed_experts; ++e) {
      biased[e] = scores[t][e].item<double>() + bias[e].item<double>();
    }
    std::set<int64_t> chosen = row_set(r.expert_ids, t);
    EXPECT_EQ(chosen.size(), static_cast<size_t>(c.num_experts_per_tok)) << "token " << t << " got duplicates";
    EXPECT_EQ(chosen, reference_selection(biased, c)) << "token " << t;
    // Gate weights: unbiased scores of the chosen experts, normalised, times the scaling factor.
    double total = 0;
    for (int64_t e : chosen) total += scores[t][e].item<double>();
    for (int64_t j = 0; j < c.num_experts_per_tok; ++j) {
      int64_t e = r.expert_ids[t][j].item<int64_t>();
      EXPECT_NEAR(r.weights[t][j].item<double>(), scores[t][e].item<double>() / total * c.routed_scaling_factor, 1e-12);
    }
  }
}

ModelConfig routing_config(int64_t experts, int64_t groups, int64_t topk_group, int64_t k, int64_t group_score_topk = 2) {
  ModelConfig c = tiny_config();
  c.n_routed_experts = experts;
  c.n_group = groups;
  c.topk_group = topk_group;
  c.num_experts_per_tok = k;
  c.group_score_topk = group_score_topk;
  c.validate();
  return c;
}

TEST(Routing, MatchesPerTokenReferenceForSeveralGroupLayouts) {
  torch::manual_seed(1);
  // {experts, groups, topk_group, K, group_score_topk}: groups scored by their best 1 to 4
  // (the repeated-max loop of mask_to_top_groups), K not a multiple of topk_group included.
  for (auto [experts, groups, topk_group, k, score_topk] : std::vector<std::array<int64_t, 5>>{
           {8, 4, 2, 4, 2}, {16, 4, 1, 2, 2}, {16, 8, 4, 8, 1}, {12, 1, 1, 3, 2}, {32, 8, 4, 8, 3},
           {24, 4, 1, 3, 3}, {16, 4, 2, 2, 1}, {16, 4, 2, 3, 4}, {8, 2, 1, 2, 4}}) {
    ModelConfig c = routing_config(experts, groups, topk_group, k, score_topk);
    auto scores = torch::rand({64, experts}, torch::kDouble);
    auto bias = torch::randn({experts}, torch::kDouble) * 0.1;
    expect_routing_matches_reference(scores, bias, c);
  }
}

// Decoding's few tokens route by per-token loops (route_few_tokens): the same rule.
TEST(Routing, FewTokenRoutingEqualsRouteTokens) {
  torch::manual_seed(42);
  for (auto [experts, groups, topk_group, k, score_topk] : std::vector<std::array<int64_t, 5>>{
           {8, 4, 2, 4, 2}, {16, 4, 1, 2, 2}, {16, 8, 4, 8, 1}, {12, 1, 1, 3, 2}, {24, 4, 1, 3, 3}, {16, 4, 2, 2, 1},
           {16, 4, 2, 3, 4}, {8, 2, 1, 1, 4}}) {
    for (bool normalise : {true, false}) {
      ModelConfig c = routing_config(experts, groups, topk_group, k, score_topk);
      c.norm_topk_prob = normalise;
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

TEST(Routing, FewTokenRoutingBreaksTiesTowardsLowerIndices) {
  ModelConfig c = routing_config(8, 4, 2, 4);
  auto scores = torch::full({1, 8}, 0.5f);
  Routing r = route_few_tokens(scores, torch::zeros({8}), c);
  // All groups tie, so groups 0 and 1 are kept, and within them experts in index order.
  EXPECT_TRUE(torch::equal(r.expert_ids, torch::tensor({{0, 1, 2, 3}}, torch::kLong))) << r.expert_ids;
  EXPECT_LT(max_abs_diff(r.weights, torch::full({1, 4}, 0.25 * c.routed_scaling_factor)), 1e-7);
}

TEST(Routing, FewTokenRoutingWithNaNFallsBackToRouteTokens) {
  ModelConfig c = routing_config(8, 4, 2, 4);
  auto scores = torch::rand({2, 8});
  scores[1][6] = std::nanf("");
  auto bias = torch::zeros({8});
  EXPECT_TRUE(torch::equal(route_few_tokens(scores, bias, c).expert_ids, route_tokens(scores, bias, c).expert_ids));
  EXPECT_THROW(route_few_tokens(scores, torch::zeros({7}), c), Error);
}

TEST(Routing, MoeGateOfFewRowsRoutesLikeTheReference) {
  ModelConfig c = routing_config(16, 4, 2, 4);
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

TEST(Routing, MaskedGroupsUseMinusInfinityNotZero) {
  // With strongly negative biases every biased score is negative; a 0 fill of the masked groups
  // would make masked experts win. The reference (and route_tokens) must still pick inside the
  // kept groups.
  torch::manual_seed(2);
  ModelConfig c = routing_config(16, 4, 2, 4);
  auto scores = torch::rand({32, 16}, torch::kDouble);
  auto bias = torch::full({16}, -5.0, torch::kDouble) + torch::randn({16}, torch::kDouble) * 0.1;
  expect_routing_matches_reference(scores, bias, c);
  Routing r = route_tokens(scores, bias, c);
  for (int64_t t = 0; t < 32; ++t) {
    std::set<int64_t> groups;
    for (int64_t e : row_set(r.expert_ids, t)) groups.insert(e / 4);
    EXPECT_LE(groups.size(), 2u) << "token " << t << " spans more than topk_group groups";
  }
}

TEST(Routing, BiasChangesSelectionButNotTheWeightsOfChosenExperts) {
  torch::manual_seed(3);
  ModelConfig c = routing_config(8, 1, 1, 2);
  auto scores = torch::rand({100, 8}, torch::kDouble);
  auto no_bias = torch::zeros({8}, torch::kDouble);
  auto favour_7 = no_bias.clone();
  favour_7[7] = 10.0;  // expert 7 now wins every token
  Routing plain = route_tokens(scores, no_bias, c);
  Routing biased = route_tokens(scores, favour_7, c);
  int64_t changed = 0;
  for (int64_t t = 0; t < 100; ++t) {
    changed += row_set(plain.expert_ids, t) != row_set(biased.expert_ids, t);
    EXPECT_EQ(biased.expert_ids[t][0].item<int64_t>(), 7);
  }
  EXPECT_GT(changed, 50);
  expect_routing_matches_reference(scores, favour_7, c);  // weights from unbiased scores
  // The same chosen set gives the same weights whatever bias chose it.
  auto small_bias = torch::full({8}, 0.3, torch::kDouble);  // a uniform shift changes nothing
  Routing shifted = route_tokens(scores, small_bias, c);
  EXPECT_TRUE(torch::equal(shifted.expert_ids, plain.expert_ids));
  EXPECT_LT(max_abs_diff(shifted.weights, plain.weights), 1e-15);
}

TEST(Routing, BiasReceivesNoGradientAndScoresDo) {
  ModelConfig c = tiny_config();
  torch::manual_seed(4);
  MoeGate gate(c);
  torch::nn::init::normal_(gate->weight, 0.0, 0.5);
  gate->e_score_correction_bias.copy_(torch::randn({c.n_routed_experts}));
  auto x = torch::randn({10, c.hidden_size});
  Routing r = gate(x);
  r.weights.sum().backward();
  EXPECT_FALSE(gate->e_score_correction_bias.requires_grad());
  EXPECT_GT(gate->weight.grad().abs().sum().item<double>(), 0.0);
}

TEST(Dispatch, GroupsAssignmentsByExpertAndCountsThem) {
  auto ids = torch::tensor({3, 1, 0, 3, 1, 2}, torch::kLong).view({3, 2});  // 3 tokens, K = 2
  ExpertDispatch d = dispatch_by_expert(ids, 5);
  EXPECT_EQ(d.tokens_per_expert, (std::vector<int64_t>{1, 2, 1, 2, 0}));
  // Sorted by expert, stable: expert 0 <- token 1; expert 1 <- tokens 0, 2; expert 2 <- token 2;
  // expert 3 <- tokens 0, 1.
  std::vector<int64_t> tokens(d.token_index.data_ptr<int64_t>(), d.token_index.data_ptr<int64_t>() + 6);
  EXPECT_EQ(tokens, (std::vector<int64_t>{1, 0, 2, 2, 0, 1}));
}

// Per-token reference: y_t = sum_k w_{t,k} * SwiGLU_{e_{t,k}}(x_t), one expert at a time.
torch::Tensor naive_routed_experts(const torch::Tensor& x, const Routing& r, const torch::Tensor& gate_up,
                                   const torch::Tensor& down) {
  const int64_t inter = down.size(2);
  std::vector<torch::Tensor> rows;
  for (int64_t t = 0; t < x.size(0); ++t) {
    auto y = torch::zeros({x.size(1)}, x.options());
    for (int64_t j = 0; j < r.expert_ids.size(1); ++j) {
      int64_t e = r.expert_ids[t][j].item<int64_t>();
      auto gate = torch::mv(gate_up[e].narrow(0, 0, inter), x[t]);
      auto up = torch::mv(gate_up[e].narrow(0, inter, inter), x[t]);
      y = y + r.weights[t][j] * torch::mv(down[e], torch::silu(gate) * up);
    }
    rows.push_back(y);
  }
  return torch::stack(rows);
}

TEST(Dispatch, SortedGroupedExpertsEqualNaivePerTokenLoopWithGradients) {
  ModelConfig c = tiny_config();
  torch::manual_seed(5);
  MoeGate gate(c);
  RoutedExperts experts(c);
  gate->to(torch::kDouble);
  experts->to(torch::kDouble);
  torch::nn::init::normal_(gate->weight, 0.0, 0.5);
  torch::nn::init::normal_(experts->gate_up_proj, 0.0, 0.3);
  torch::nn::init::normal_(experts->down_proj, 0.0, 0.3);
  auto x = torch::randn({40, c.hidden_size}, torch::kDouble).requires_grad_(true);
  auto x_ref = x.detach().clone().requires_grad_(true);

  Routing r = gate(x);
  auto fast = experts(x, r);
  Routing r_ref = gate(x_ref);
  auto naive = naive_routed_experts(x_ref, r_ref, experts->gate_up_proj, experts->down_proj);
  EXPECT_LT(max_abs_diff(fast, naive), 1e-12);

  auto probe = torch::randn_like(fast);
  auto fast_grads = torch::autograd::grad({(fast * probe).sum()}, {x, experts->gate_up_proj, experts->down_proj, gate->weight});
  auto naive_grads = torch::autograd::grad({(naive * probe).sum()}, {x_ref, experts->gate_up_proj, experts->down_proj, gate->weight});
  for (size_t i = 0; i < fast_grads.size(); ++i) {
    EXPECT_LT(max_abs_diff(fast_grads[i], naive_grads[i]), 1e-11) << "gradient " << i;
  }
  // Experts that received no token get exactly zero gradient.
  auto counts = expert_token_counts(r.expert_ids, c.n_routed_experts);
  for (int64_t e = 0; e < c.n_routed_experts; ++e) {
    if (counts[e].item<int64_t>() == 0) {
      EXPECT_EQ(fast_grads[1][e].abs().sum().item<double>(), 0.0);
    }
  }
}

TEST(Dispatch, ExpertRowsPadToTheMultiple) {
  EXPECT_EQ(pad_expert_rows({5, 0, 32, 33, 1}, 32), (std::vector<int64_t>{32, 0, 32, 64, 32}));
  EXPECT_EQ(pad_expert_rows({5, 0, 7}, 1), (std::vector<int64_t>{5, 0, 7}));
  EXPECT_THROW(pad_expert_rows({5}, 0), std::exception);
  EXPECT_THROW(pad_expert_rows({-1}, 32), std::exception);
}

TEST(Dispatch, FewTokensOfDecodingEqualTheNaiveLoopAndTheGroupedPath) {
  ModelConfig c = tiny_config();
  torch::manual_seed(8);
  MoeGate gate(c);
  RoutedExperts experts(c);
  torch::nn::init::normal_(gate->weight, 0.0, 0.5);
  torch::nn::init::normal_(experts->gate_up_proj, 0.0, 0.3);
  torch::nn::init::normal_(experts->down_proj, 0.0, 0.3);
  for (int64_t tokens = 1; tokens <= kFewRowsMaxRows + 1; ++tokens) {
    auto x = torch::randn({tokens, c.hidden_size});
    Routing r = gate(x);
    auto grouped = experts(x, r).detach();  // autograd on: the sorted, grouped path
    torch::NoGradGuard no_grad;             // inference: the few-token path up to kFewRowsMaxRows
    auto naive = naive_routed_experts(x, r, experts->gate_up_proj.detach(), experts->down_proj.detach());
    auto fast = experts(x, r);
    EXPECT_LT(max_abs_diff(fast, naive), 1e-5) << tokens << " tokens";
    EXPECT_LT(max_abs_diff(fast, grouped), 1e-5) << tokens << " tokens";
    EXPECT_LT(max_abs_diff(experts->forward_few_tokens(x, r), naive), 1e-5) << tokens << " tokens";
  }
  // Threads take the experts' jobs in turn and the weighted sums follow the jobs' order: any
  // thread count gives the same bits, at any token count (12 tokens: several kernel calls of at
  // most kFewRowsMaxRows rows for the busier experts).
  {
    torch::NoGradGuard no_grad;
    const int saved_threads = kernels::few_rows_matmul_threads();
    for (int64_t tokens : {1, 3, 12}) {
      auto x = torch::randn({tokens, c.hidden_size});
      Routing r = gate(x);
      kernels::set_few_rows_matmul_threads(1);
      auto one = experts->forward_few_tokens(x, r);
      kernels::set_few_rows_matmul_threads(3);
      auto three = experts->forward_few_tokens(x, r);
      EXPECT_TRUE(torch::equal(one, three)) << tokens << " tokens";
      auto naive = naive_routed_experts(x, r, experts->gate_up_proj.detach(), experts->down_proj.detach());
      EXPECT_LT(max_abs_diff(three, naive), 1e-5) << tokens << " tokens, 3 threads";
    }
    kernels::set_few_rows_matmul_threads(saved_threads);
  }
  // Each token's output is bit for bit what it gets alone, whichever tokens share the call and
  // whichever experts they bring first (a speculative verify's rows are plain decoding's).
  {
    torch::NoGradGuard no_grad;
    for (int64_t tokens = 2; tokens <= kFewRowsMaxRows; ++tokens) {
      for (int trial = 0; trial < 8; ++trial) {
        auto x = torch::randn({tokens, c.hidden_size});
        Routing r = gate(x);
        auto together = experts->forward_few_tokens(x, r);
        for (int64_t t = 0; t < tokens; ++t) {
          Routing alone{r.scores.narrow(0, t, 1), r.expert_ids.narrow(0, t, 1), r.weights.narrow(0, t, 1)};
          EXPECT_TRUE(torch::equal(together.narrow(0, t, 1), experts->forward_few_tokens(x.narrow(0, t, 1), alone)))
              << "token " << t << " of " << tokens << ", trial " << trial;
        }
      }
    }
  }
  // Types other than float32 take the grouped path at any token count, in their own precision.
  RoutedExperts experts64(c);
  experts64->to(torch::kDouble);
  torch::NoGradGuard no_grad;
  experts64->gate_up_proj.copy_(experts->gate_up_proj);
  experts64->down_proj.copy_(experts->down_proj);
  for (int64_t tokens = 1; tokens <= kFewRowsMaxRows; ++tokens) {
    auto x = torch::randn({tokens, c.hidden_size}, torch::kDouble);
    Routing r = gate(x.to(torch::kFloat));
    r.weights = r.weights.to(torch::kDouble);
    auto naive = naive_routed_experts(x, r, experts64->gate_up_proj, experts64->down_proj);
    EXPECT_LT(max_abs_diff(experts64(x, r), naive), 1e-12) << tokens << " tokens, float64";
  }
}

TEST(Moe, LayerEqualsSharedPlusRoutedAndReportsCounts) {
  ModelConfig c = tiny_config();
  torch::manual_seed(6);
  Moe moe(c);
  moe->to(torch::kDouble);
  for (auto& p : moe->parameters()) torch::nn::init::normal_(p, 0.0, 0.3);
  auto x = torch::randn({3, 5, c.hidden_size}, torch::kDouble);
  MoeStats stats;
  auto y = moe(x, &stats);
  auto flat = x.view({15, c.hidden_size});
  Routing r = moe->gate(flat);
  auto expected = naive_routed_experts(flat, r, moe->experts->gate_up_proj, moe->experts->down_proj) +
                  moe->shared_experts(flat);
  EXPECT_LT(max_abs_diff(y.view({15, -1}), expected), 1e-12);
  EXPECT_EQ(stats.expert_counts.sum().item<int64_t>(), 15 * c.num_experts_per_tok);
  for (int64_t e = 0; e < c.n_routed_experts; ++e) {
    EXPECT_EQ(stats.expert_counts[e].item<int64_t>(), r.expert_ids.eq(e).sum().item<int64_t>());
  }
}

// Decoding's few float32 tokens: the shared expert runs among the routed experts' jobs, and the
// layer's output must be bit for bit `routed + shared` computed one after the other, at any token
// count (more than kFewRowsMax under batched decoding: several shared jobs) and thread count.
TEST(Moe, SharedExpertAmongTheRoutedJobsGivesTheSameBitsAsAfterThem) {
  ModelConfig c = tiny_config();
  c.n_shared_experts = 2;  // the shared expert twice as wide as a routed one
  torch::manual_seed(9);
  Moe moe(c);
  for (auto& p : moe->parameters()) torch::nn::init::normal_(p, 0.0, 0.3);
  torch::NoGradGuard no_grad;
  const int saved_threads = kernels::few_rows_matmul_threads();
  for (int64_t tokens : {int64_t{1}, int64_t{3}, kernels::kFewRowsMax, 2 * kernels::kFewRowsMax + 3}) {
    ScopedBatchedDecoding batched;  // lets more than kFewRowsMaxRows tokens take the few-token path
    auto x = torch::randn({1, tokens, c.hidden_size});
    auto flat = x.view({tokens, c.hidden_size});
    Routing r = moe->gate(flat);
    auto separately = moe->experts->forward_few_tokens(flat, r) + moe->shared_experts(flat);
    for (int threads : {1, 2, 3}) {
      kernels::set_few_rows_matmul_threads(threads);
      auto together = moe(x).view({tokens, c.hidden_size});
      EXPECT_TRUE(torch::equal(together, separately)) << tokens << " tokens, " << threads << " threads";
    }
    // And both against an independent computation in double precision.
    auto expected = naive_routed_experts(flat.to(torch::kDouble), r, moe->experts->gate_up_proj.to(torch::kDouble),
                                         moe->experts->down_proj.to(torch::kDouble));
    auto h = flat.to(torch::kDouble);
    auto& m = moe->shared_experts;
    expected += torch::matmul(torch::silu(torch::matmul(h, m->gate_proj->weight.to(torch::kDouble).t())) *
                                  torch::matmul(h, m->up_proj->weight.to(torch::kDouble).t()),
                              m->down_proj->weight.to(torch::kDouble).t());
    EXPECT_LT(max_abs_diff(separately.to(torch::kDouble), expected), 1e-4) << tokens << " tokens";
  }
  kernels::set_few_rows_matmul_threads(saved_threads);
}

TEST(LoadBalance, SequenceWiseTermEqualsEquations17To20) {
  torch::manual_seed(7);
  const int64_t batch = 3, length = 7, experts = 8, k = 2;
  auto scores = torch::rand({batch * length, experts}, torch::kDouble) + 0.01;
  auto ids = std::get<1>(torch::rand({batch * length, experts}).topk(k, -1));
  double expected = 0;
  for (int64_t b = 0; b < batch; ++b) {
    double sequence_sum = 0;
    for (int64_t i = 0; i < experts; ++i) {
      double selected = 0, p = 0;
      for (int64_t t = 0; t < length; ++t) {
        int64_t row = b * length + t;
        for (int64_t j = 0; j < k; ++j) selected += ids[row][j].item<int64_t>() == i;
        p += scores[row][i].item<double>() / scores[row].sum().item<double>();
      }
      double f = static_cast<double>(experts) / (k * length) * selected;  // Eq. 18
      sequence_sum += f * (p / length);                                    // Eq. 17, 20
    }
    expected += sequence_sum / batch;
  }
  EXPECT_NEAR(sequence_balance_term(scores, ids, batch, length).item<double>(), expected, 1e-12);
  // Perfectly uniform routing and scores give exactly 1 (the minimum of N_r sum f_i P_i / N_r).
  auto uniform_scores = torch::ones({4, 4}, torch::kDouble);
  auto uniform_ids = torch::tensor({0, 1, 2, 3, 0, 1, 2, 3}, torch::kLong).view({4, 2});
  EXPECT_NEAR(batch_balance_term(uniform_scores, uniform_ids).item<double>(), 1.0, 1e-12);
}

// Eq. 18: the sequence-wise term counts the top-K of the unbiased affinities, not the experts the
// bias and the group limit selected. A bias that overturns the selection shows the difference.
TEST(LoadBalance, TheMoeLayersSequenceTermCountsTheTopKOfUnbiasedAffinities) {
  ModelConfig c = tiny_config();
  torch::manual_seed(11);
  Moe moe(c);
  moe->to(torch::kDouble);
  for (auto& p : moe->parameters()) torch::nn::init::normal_(p, 0.0, 0.3);
  moe->gate->e_score_correction_bias.copy_(torch::tensor({2.0, 1.5, -2.0, -2.0, 1.0, 0.5, -2.0, -2.0}));
  const int64_t batch = 2, length = 6;
  auto x = torch::randn({batch, length, c.hidden_size}, torch::kDouble);
  MoeStats stats;
  moe(x, &stats);
  auto scores = torch::sigmoid(torch::matmul(x.view({batch * length, -1}), moe->gate->weight.t()));
  const int64_t experts = c.n_routed_experts, k = c.num_experts_per_tok;
  double expected = 0;
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<double> count(experts, 0), p(experts, 0);
    for (int64_t t = 0; t < length; ++t) {
      const int64_t row = b * length + t;
      std::vector<std::pair<double, int64_t>> ranked;
      double sum = 0;
      for (int64_t i = 0; i < experts; ++i) {
        ranked.push_back({scores[row][i].item<double>(), i});
        sum += scores[row][i].item<double>();
      }
      std::sort(ranked.rbegin(), ranked.rend());
      for (int64_t j = 0; j < k; ++j) count[ranked[j].second] += 1;
      for (int64_t i = 0; i < experts; ++i) p[i] += scores[row][i].item<double>() / sum / length;
    }
    for (int64_t i = 0; i < experts; ++i) expected += experts / double(k * length) * count[i] * p[i] / batch;
  }
  EXPECT_NEAR(stats.sequence_balance.item<double>(), expected, 1e-12);
  // The selected experts give another value: the test tells the two rules apart.
  const double selected_rule = sequence_balance_term(scores, stats.expert_ids, batch, length).item<double>();
  EXPECT_GT(std::fabs(selected_rule - expected), 1e-3);
}

TEST(LoadBalance, MaxViolation) {
  EXPECT_NEAR(max_violation(torch::tensor({10, 10, 10, 10}, torch::kLong)), 0.0, 1e-12);
  EXPECT_NEAR(max_violation(torch::tensor({40, 0, 0, 0}, torch::kLong)), 3.0, 1e-12);
  EXPECT_NEAR(max_violation(torch::tensor({15, 5, 10, 10}, torch::kLong)), 0.5, 1e-12);
}

TEST(Routing, ChangedExpertChoicesCountsChoicesNotMadeByTheOther) {
  auto a = torch::tensor({3, 1, 0, 2, 5, 4}, torch::kLong).view({3, 2});
  EXPECT_EQ(changed_expert_choices(a, a), 0.0);
  // Row 0 the same set in another order, row 1 one of two changed, row 2 both changed: 3 of 6.
  auto b = torch::tensor({1, 3, 0, 7, 6, 7}, torch::kLong).view({3, 2});
  EXPECT_DOUBLE_EQ(changed_expert_choices(a, b), 3.0 / 6.0);
  EXPECT_THROW(changed_expert_choices(a, b.narrow(0, 0, 2)), Error);
}

}  // namespace
}  // namespace nextn
