// The adaptive draft count (--draft auto) on synthetic acceptance and costs: its choice must be
// the argmax of expected tokens per second computed here directly, and it must try every count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "nextn/inference/draft_policy.h"
#include "nextn/util/error.h"

namespace nextn::inference {
namespace {

// Feeds the policy steps whose outcome follows fixed per-depth acceptance (deterministically:
// depth k is accepted in round(a_k * 100) of every 100 steps that reach it) and fixed costs.
struct Simulation {
  std::vector<double> acceptance;  // a_k
  std::vector<double> seconds;     // step time for N = 0..D
  std::vector<int64_t> reached, accepted;

  int64_t outcome(int64_t drafted) {
    int64_t kept = 0;
    for (int64_t k = 1; k <= drafted; ++k) {
      auto& r = reached[k - 1];
      auto& a = accepted[k - 1];
      ++r;
      // Accept while the running fraction stays at or below a_k.
      if (double(a + 1) <= acceptance[k - 1] * double(r) + 1e-9) {
        ++a;
        ++kept;
      } else {
        break;
      }
    }
    return kept;
  }
};

// E[tokens/s] for each N from the same formula, independently of the policy's code.
std::vector<double> rates_by_formula(const std::vector<double>& a, const std::vector<double>& seconds) {
  std::vector<double> rates;
  for (std::size_t n = 0; n < seconds.size(); ++n) {
    double tokens = 1, all = 1;
    for (std::size_t k = 0; k < n; ++k) tokens += (all *= a[k]);
    rates.push_back(tokens / seconds[n]);
  }
  return rates;
}

// Runs the policy for `steps` steps; returns its last choice, counts[n] the steps that drafted n.
int64_t settle(Simulation sim, int64_t steps, std::vector<int64_t>* counts) {
  const int64_t depth = int64_t(sim.acceptance.size());
  sim.reached.assign(depth, 0);
  sim.accepted.assign(depth, 0);
  DraftCountPolicy policy(depth);
  int64_t last = -1;
  for (int64_t step = 0; step < steps; ++step) {
    last = policy.choose(depth);
    (*counts)[last] += 1;
    policy.record(last, sim.outcome(last), sim.seconds[last]);
  }
  return last;
}

TEST(DraftPolicy, ChoosesTheCountWithTheMostExpectedTokensPerSecond) {
  const std::vector<std::vector<double>> acceptances = {{0.9, 0.8}, {0.3, 0.2}, {0.7, 0.0}, {0.05, 0.05}, {0.95, 0.9}};
  const std::vector<std::vector<double>> costs = {{1.0, 1.1, 1.2}, {1.0, 1.5, 2.0}, {1.0, 1.2, 1.3}, {1.0, 1.02, 1.04}};
  for (const auto& a : acceptances) {
    for (const auto& seconds : costs) {
      const std::vector<double> rates = rates_by_formula(a, seconds);
      const int64_t best = std::max_element(rates.begin(), rates.end()) - rates.begin();
      std::vector<double> others = rates;
      others.erase(others.begin() + best);
      const double margin = rates[best] / *std::max_element(others.begin(), others.end());
      std::vector<int64_t> counts(3, 0);
      const int64_t chosen = settle({a, seconds, {}, {}}, 400, &counts);
      const std::string label = "a = {" + std::to_string(a[0]) + ", " + std::to_string(a[1]) + "}, seconds = {" +
                                std::to_string(seconds[0]) + ", " + std::to_string(seconds[1]) + ", " +
                                std::to_string(seconds[2]) + "}";
      // A clear winner (10% ahead) is found; in a near tie either choice is nearly as good.
      if (margin >= 1.1) { EXPECT_EQ(chosen, best) << label; }
      EXPECT_GE(rates[chosen], 0.95 * rates[best]) << label;
      // Over the whole run, exploration included: tokens over seconds of the counts chosen.
      double tokens = 0, time = 0;
      for (int64_t n = 0; n < 3; ++n) {
        EXPECT_GE(counts[n], 2) << "every count is tried: " << label;
        tokens += double(counts[n]) * rates[n] * seconds[n];
        time += double(counts[n]) * seconds[n];
      }
      EXPECT_GE(tokens / time, 0.9 * rates[best]) << label;
    }
  }
}

// A shared machine's pace drifts: here every step takes 1.6x as long in alternate phases of 40
// steps. Plain decoding is 14% ahead of the best drafting count at either pace; comparing an N
// timed in a fast phase with one timed in a slow phase (a mean per N) would draft for whole phases.
TEST(DraftPolicy, ComparesCountsAtTheSamePaceWhenTheMachineSpeedDrifts) {
  Simulation sim{{0.5, 0.3}, {1.0, 1.7, 2.4}, {0, 0}, {0, 0}};
  const std::vector<double> rates = rates_by_formula(sim.acceptance, sim.seconds);
  ASSERT_GT(rates[0], 1.1 * std::max(rates[1], rates[2]));
  DraftCountPolicy policy(2);
  int64_t drafting_after_warmup = 0, steps = 0;
  for (int64_t step = 0; step < 1000; ++step) {
    const int64_t n = policy.choose(2);
    const double pace = (step / 40) % 2 == 0 ? 1.0 : 1.6;
    policy.record(n, sim.outcome(n), pace * sim.seconds[n]);
    if (step >= 8) {
      ++steps;
      drafting_after_warmup += n > 0 ? 1 : 0;
    }
  }
  // Only the retries (one step in 128) draft.
  EXPECT_LE(drafting_after_warmup, steps / 128 + 1) << "of " << steps << " steps";
  // The learnt costs keep the true ratios whatever phase each was measured in.
  EXPECT_NEAR(policy.expected_seconds(1) / policy.expected_seconds(0), 1.7, 0.1);
  EXPECT_NEAR(policy.expected_seconds(2) / policy.expected_seconds(0), 2.4, 0.15);
}

// A retry costs more than its step (the drafter's caches catch up), so retries back off while the
// best choice holds, and go to counts expected within 10% of the best; a count far behind is
// tried again only after 4096 steps. When the costs change, the next retry of each count finds it
// (one retry's step time weighs as a new measurement), and the choice follows.
TEST(DraftPolicy, RetriesBackOffWhileTheBestHoldsAndFindAChange) {
  // Plain best: 1 against 0.97 (N = 1, a contender) and 0.73 (N = 2, far behind).
  Simulation sim{{0.6, 0.5}, {1.0, 1.65, 2.6}, {0, 0}, {0, 0}};
  DraftCountPolicy policy(2);
  std::vector<int64_t> retried(3, 0);
  int64_t switched_at = -1;
  for (int64_t step = 0; step < 7000; ++step) {
    if (step == 4000) sim.seconds = {1.0, 1.1, 2.6};  // now N = 1 is best: 1.6 / 1.1 = 1.45
    const int64_t n = policy.choose(2);
    policy.record(n, sim.outcome(n), sim.seconds[n]);
    if (step >= 8 && step < 4000) retried[n] += 1;
    if (step >= 4000 && n == 1 && switched_at < 0) switched_at = step;
  }
  // Retries at 128, 256, 512, 1024, 2048 and 3072 steps, all of the contender: a fixed interval
  // of 128 would have taken 31, and retrying the oldest count would have alternated N = 1, 2.
  EXPECT_EQ(retried[1], 6);
  EXPECT_EQ(retried[2], 0);
  ASSERT_GE(switched_at, 4000);
  EXPECT_LE(switched_at, 4097);  // the first retry after the change (at 4096)
  EXPECT_EQ(policy.choose(2), 1);
}

// A count far behind the best is still measured again, after 4096 steps: costs can change.
TEST(DraftPolicy, ACountFarBehindIsRetriedOnlyWhenStale) {
  Simulation sim{{0.3, 0.3}, {1.0, 2.0, 3.0}, {0, 0}, {0, 0}};  // 1 against 0.65 and 0.46
  DraftCountPolicy policy(2);
  std::vector<int64_t> first_retry(3, -1);
  for (int64_t step = 0; step < 9000; ++step) {
    const int64_t n = policy.choose(2);
    policy.record(n, sim.outcome(n), sim.seconds[n]);
    if (step >= 8 && n > 0 && first_retry[n] < 0) first_retry[n] = step;
  }
  // Tried last within the first 8 steps; the retries after 4096 more steps (at 5120, 6144) take
  // the older first: N = 2, the deepest, was tried first.
  EXPECT_EQ(first_retry[2], 5120);
  EXPECT_EQ(first_retry[1], 6144);
}

TEST(DraftPolicy, EstimatesFollowTheRecordedSteps) {
  DraftCountPolicy policy(2);
  EXPECT_DOUBLE_EQ(policy.acceptance(1), 0.5);  // the prior
  EXPECT_DOUBLE_EQ(policy.expected_tokens(2), 1.75);
  policy.record(2, 2, 0.4);  // both accepted
  policy.record(2, 0, 0.6);  // depth 1 rejected: depth 2 not reached
  EXPECT_DOUBLE_EQ(policy.acceptance(1), (1.0 + 1.0) / (2.0 + 2.0));
  EXPECT_DOUBLE_EQ(policy.acceptance(2), (1.0 + 2.0 * 0.5) / (1.0 + 2.0));  // prior: depth 1's estimate
  // speed x cost, in logarithms: the first step sets speed 0.4 and cost 1; the second moves the
  // log speed halfway to log 0.6, then the log cost (its second try: weight 1/2) halfway to what
  // is left of log 0.6.
  const double log_speed = std::log(0.4) + 0.5 * (std::log(0.6) - std::log(0.4));
  const double log_cost = 0.5 * (std::log(0.6) - log_speed);
  EXPECT_NEAR(policy.expected_seconds(2), std::exp(log_speed + log_cost), 1e-12);
  // Step times are shared by requests; acceptance is each request's own, with the requests'
  // before it as its prior.
  auto costs = std::make_shared<DraftStepCosts>(2);
  DraftCountPolicy first(2, costs), second(2, costs);
  first.record(1, 1, 0.5);
  first.record(1, 1, 0.5);
  EXPECT_DOUBLE_EQ(second.expected_seconds(1), 0.5);
  EXPECT_DOUBLE_EQ(second.acceptance(1), 0.5);  // it started before the first's steps
  DraftCountPolicy third(2, costs);
  const double prior = (2.0 + 2.0 * 0.5) / (2.0 + 2.0);
  EXPECT_DOUBLE_EQ(third.acceptance(1), prior);
  third.record(1, 0, 0.5);
  EXPECT_DOUBLE_EQ(third.acceptance(1), (0.0 + 2.0 * prior) / (1.0 + 2.0));
  EXPECT_THROW(DraftCountPolicy(3, costs), Error);
  EXPECT_EQ(policy.choose(0), 0);  // the budget leaves room for no draft
  EXPECT_THROW(policy.record(1, 2, 0.1), Error);
  EXPECT_THROW(DraftCountPolicy(0), Error);
}

}  // namespace
}  // namespace nextn::inference
