// How many tokens a speculative step drafts (`--draft auto`): before each step, the N in 0..D
// (0 = a plain step) that maximises the expected tokens per second,
//
//   E[tokens | N] / E[seconds | N],   E[tokens | N] = 1 + sum_{k=1..N} prod_{j=1..k} a_j,
//
// where a_j is depth j's acceptance given that every earlier draft was accepted, learnt per
// request (counts of its own steps; prior: the acceptance of the process's earlier requests at
// depth 1, 0.5 before any, and the depth above's estimate for the deeper ones, each worth two
// steps), and
// E[seconds | N] is the wall time of a step that drafted N on this machine (drafting, catching the
// draft caches up, verifying N + 1 rows), learnt online and shared by every request of the process
// (DraftStepCosts) as speed x cost[N]: cost[N] relative to the others, speed the machine's pace
// now, which every step updates whatever its N. A shared machine's pace drifts by tens of percent
// between phases of seconds; a plain mean per N would compare an N measured in a slow phase with
// one measured in a fast phase, while the argmax above depends on the relative costs only. Each N
// is tried twice first (the deepest four times: its steps measure every
// depth's acceptance), then the best is taken, and now and then an N is tried again so that the
// estimates keep up (DraftStepCosts::retry_due): the one tried longest ago among those expected
// within 10% of the best, else among those not tried for 4096 steps. A retry of a count that is far behind
// would cost its loss and a catch-up of the drafter's caches for nothing likely to change the
// choice (on the demo's model such retries cost auto 5-10% of plain decoding's speed).
// Every choice keeps speculative decoding exact
// (greedy output equals plain decoding, sampled output is distributed as the main model's): each
// step is an exact speculative step, whatever its N.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace nextn::inference {

// Measured step times by draft count, for one model on one machine (thread-safe: a server's
// requests share one).
class DraftStepCosts {
 public:
  explicit DraftStepCosts(int64_t max_drafts);
  void record(int64_t drafted, double step_seconds);
  double seconds(int64_t drafted) const;  // speed x cost[N] now; 0 when never measured
  int64_t tries(int64_t drafted) const;
  int64_t last_tried(int64_t drafted) const;  // the step count when last measured, -1 never
  int64_t steps() const;
  int64_t max_drafts() const { return max_drafts_; }

  // When a count other than the best is due to be measured again (DraftCountPolicy::choose says
  // which). A retry costs more than its step: the drafter's caches catch up over every position
  // since the request last drafted (on the demo's model, retries every 128 steps cost auto 11% of
  // plain decoding's speed). So the interval doubles after each retry while the best choice holds
  // (128, 256, ... 1024 steps), and returns to 128 when the best choice changes.
  bool retry_due() const;
  void start_retry();             // a retry is being taken now: the next one waits twice as long
  void note_best(int64_t drafts);  // the policy's best choice now (outside retries and tries)

  // Depth k's drafts examined and accepted over every request so far (the prior of a new one's).
  void record_acceptance(int64_t drafted, int64_t accepted);
  double shared_acceptance(int64_t depth, double prior) const;  // (accepted + 2 prior) / (reached + 2)

 private:
  // Weights of a new step in the running estimates: the pace follows phases within a few steps,
  // a cost moves slowly (its first few steps are averaged evenly).
  static constexpr double kSpeedSmoothing = 0.5;
  static constexpr double kCostSmoothing = 0.1;
  static constexpr int64_t kRetryFirst = 128;
  static constexpr int64_t kRetryMost = 1024;
  int64_t max_drafts_;
  mutable std::mutex mutex_;
  int64_t retry_interval_ = kRetryFirst, next_retry_ = kRetryFirst, best_ = -1;
  double speed_ = 0, log_speed_ = 0;     // seconds per unit of cost (0: nothing measured yet)
  std::vector<double> cost_, log_cost_;  // per N, in units of the first measured N's cost
  std::vector<int64_t> tries_, last_tried_;
  std::vector<int64_t> reached_, accepted_;  // per depth, all requests
  int64_t steps_ = 0;
};

class DraftCountPolicy {
 public:
  // `costs`: shared with other requests of the same model (a fresh one when null).
  explicit DraftCountPolicy(int64_t max_drafts, std::shared_ptr<DraftStepCosts> costs = nullptr);

  // The N for the next step, at most `limit` (the budget and the capacity may allow fewer).
  int64_t choose(int64_t limit) const;
  // What the step that drafted `drafted` tokens did: how many of them the target accepted, and
  // how long the whole step took.
  void record(int64_t drafted, int64_t accepted, double step_seconds);

  double acceptance(int64_t depth) const;        // a_depth, depth 1..D
  double expected_tokens(int64_t drafts) const;  // E[tokens | N]
  double expected_seconds(int64_t drafts) const; // the learnt step time for N (0 when untried)
  int64_t max_drafts() const { return max_drafts_; }

 private:
  static constexpr int64_t kTriesFirst = 2;
  static constexpr int64_t kDeepestTriesFirst = 4;
  // Retries go to counts expected within this fraction of the best, or untried for kRetryStale steps.
  static constexpr double kRetryContender = 0.9;
  static constexpr int64_t kRetryStale = 4096;

  double expected_rate(int64_t drafts) const;  // E[tokens | N] / E[seconds | N]; 0 when untried

  int64_t max_drafts_;
  std::shared_ptr<DraftStepCosts> costs_;
  std::vector<int64_t> reached_;   // per depth: this request's steps whose depth-k draft the target examined
  std::vector<int64_t> accepted_;  // ... and accepted
  double first_depth_prior_ = 0.5;  // depth 1's acceptance over the requests before this one
};

}  // namespace nextn::inference
