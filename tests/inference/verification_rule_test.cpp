// The acceptance rules on their own, on hand-made distributions: greedy prefix matching, and the
// speculative sampling rule's output frequencies against p for a q far from p.
#include <gtest/gtest.h>

#include <cmath>

#include "nextn/inference/speculative_sampling.h"
#include "nextn/util/error.h"

namespace nextn::inference {
namespace {

TEST(VerifyGreedy, AcceptsTheAgreeingPrefixAndTakesTheTargetsNextToken) {
  // Target argmax per row: 2, 0, 3, 1.
  auto logits = torch::tensor({{0.0, 0.1, 0.9, 0.2}, {0.8, 0.1, 0.0, 0.2}, {0.0, 0.1, 0.2, 0.3}, {0.1, 0.9, 0.0, 0.2}});
  auto v = verify_greedy(logits, {2, 0, 3});
  EXPECT_EQ(v.accepted, 3);
  EXPECT_EQ(v.next_token, 1);  // the bonus
  v = verify_greedy(logits, {2, 1, 3});
  EXPECT_EQ(v.accepted, 1);
  EXPECT_EQ(v.next_token, 0);  // the target's token where the draft went wrong
  v = verify_greedy(logits, {0, 0, 3});
  EXPECT_EQ(v.accepted, 0);
  EXPECT_EQ(v.next_token, 2);
  v = verify_greedy(logits.narrow(0, 0, 1), {});
  EXPECT_EQ(v.accepted, 0);
  EXPECT_EQ(v.next_token, 2);
  EXPECT_THROW(verify_greedy(logits, {1}), Error);  // rows must be drafts + 1
}

// One draft from q, verified against p: the first output token must follow p exactly, i.e.
// q(x) min(1, p(x)/q(x)) + P(reject) normalize(max(0, p - q))(x) = p(x).
TEST(VerifySampled, FirstTokenFollowsTheTargetForAFarDrafter) {
  auto p = torch::tensor({0.05, 0.40, 0.05, 0.30, 0.20, 0.0}, torch::kDouble);
  auto q = torch::tensor({0.30, 0.10, 0.30, 0.10, 0.0, 0.20}, torch::kDouble);
  auto target = torch::stack({p, torch::full({6}, 1.0 / 6, torch::kDouble)});
  SamplingOptions options;
  options.seed = 99;
  Sampler sampler(options);
  const int draws = 40000;
  std::vector<int64_t> counts(6, 0);
  int64_t accepted = 0;
  for (int i = 0; i < draws; ++i) {
    const int64_t draft = sampler.sample(q).item<int64_t>();
    auto v = verify_sampled(target, q.unsqueeze(0), {draft}, sampler);
    counts[v.accepted == 1 ? draft : v.next_token] += 1;
    accepted += v.accepted;
  }
  // P(accept) = sum_x min(p, q) = 0.05 + 0.10 + 0.05 + 0.10 = 0.30.
  EXPECT_NEAR(static_cast<double>(accepted) / draws, 0.30, 0.01);
  for (int64_t x = 0; x < 6; ++x) {
    const double px = p[x].item<double>();
    EXPECT_NEAR(counts[x], draws * px, 5 * std::sqrt(draws * px * (1 - px)) + 1e-9) << "token " << x;
  }
}

}  // namespace
}  // namespace nextn::inference
