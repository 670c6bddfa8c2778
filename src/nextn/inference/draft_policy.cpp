#include "nextn/inference/draft_policy.h"

#include <algorithm>
#include <cmath>

#include "nextn/util/error.h"

namespace nextn::inference {

DraftStepCosts::DraftStepCosts(int64_t max_drafts)
    : max_drafts_(max_drafts),
      cost_(std::size_t(max_drafts) + 1, 0.0),
      log_cost_(std::size_t(max_drafts) + 1, 0.0),
      tries_(std::size_t(max_drafts) + 1, 0),
      last_tried_(std::size_t(max_drafts) + 1, -1),
      reached_(std::size_t(max_drafts), 0),
      accepted_(std::size_t(max_drafts), 0) {
  NEXTN_CHECK(max_drafts >= 1, "adaptive drafting needs at least one MTP depth, got ", max_drafts);
}

void DraftStepCosts::record(int64_t drafted, double step_seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  NEXTN_CHECK(drafted >= 0 && drafted <= max_drafts_ && step_seconds > 0, "draft step costs: a step of ", drafted,
              " drafts taking ", step_seconds, " s");
  const std::size_t n = std::size_t(drafted);
  // In logarithms, so that a pace that rises and falls by the same factor moves the costs back
  // where they were: log t = log speed + log cost[N].
  const double log_seconds = std::log(step_seconds);
  if (tries_[n] == 0 && speed_ == 0) {
    log_speed_ = log_seconds;  // the first step sets the unit
    log_cost_[n] = 0.0;
  } else if (tries_[n] == 0) {
    log_cost_[n] = log_seconds - log_speed_;  // relative to the pace of the steps just before
  } else {
    log_speed_ += kSpeedSmoothing * (log_seconds - log_speed_ - log_cost_[n]);
    // A count measured long ago (a retry) gets a new measurement's weight: its estimate is stale.
    const bool stale = steps_ - last_tried_[n] > kRetryFirst / 2;
    const double weight = std::max({kCostSmoothing, 1.0 / double(tries_[n] + 1), stale ? 0.5 : 0.0});
    log_cost_[n] += weight * (log_seconds - log_speed_ - log_cost_[n]);
  }
  speed_ = std::exp(log_speed_);
  cost_[n] = std::exp(log_cost_[n]);
  tries_[n] += 1;
  last_tried_[n] = steps_;
  steps_ += 1;
}

double DraftStepCosts::seconds(int64_t drafted) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return speed_ * cost_[std::size_t(drafted)];
}

int64_t DraftStepCosts::tries(int64_t drafted) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return tries_[std::size_t(drafted)];
}

int64_t DraftStepCosts::last_tried(int64_t drafted) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return last_tried_[std::size_t(drafted)];
}

int64_t DraftStepCosts::steps() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return steps_;
}

bool DraftStepCosts::retry_due() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return steps_ >= next_retry_;
}

void DraftStepCosts::start_retry() {
  std::lock_guard<std::mutex> lock(mutex_);
  next_retry_ = steps_ + retry_interval_;
  retry_interval_ = std::min(2 * retry_interval_, kRetryMost);
}

void DraftStepCosts::note_best(int64_t drafts) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (drafts != best_ && best_ >= 0) {
    retry_interval_ = kRetryFirst;
    next_retry_ = std::min(next_retry_, steps_ + kRetryFirst);
  }
  best_ = drafts;
}

void DraftStepCosts::record_acceptance(int64_t drafted, int64_t accepted) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (int64_t k = 1; k <= drafted && k <= accepted + 1; ++k) {
    reached_[std::size_t(k - 1)] += 1;
    if (k <= accepted) accepted_[std::size_t(k - 1)] += 1;
  }
}

double DraftStepCosts::shared_acceptance(int64_t depth, double prior) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::size_t k = std::size_t(depth - 1);
  return (double(accepted_[k]) + 2.0 * prior) / (double(reached_[k]) + 2.0);
}

DraftCountPolicy::DraftCountPolicy(int64_t max_drafts, std::shared_ptr<DraftStepCosts> costs)
    : max_drafts_(max_drafts),
      costs_(costs ? std::move(costs) : std::make_shared<DraftStepCosts>(max_drafts)),
      reached_(std::size_t(max_drafts), 0),
      accepted_(std::size_t(max_drafts), 0) {
  NEXTN_CHECK(max_drafts >= 1, "adaptive drafting needs at least one MTP depth, got ", max_drafts);
  NEXTN_CHECK(costs_->max_drafts() == max_drafts, "draft policy: step costs for ", costs_->max_drafts(),
              " drafts, policy for ", max_drafts);
  first_depth_prior_ = costs_->shared_acceptance(1, 0.5);
}

double DraftCountPolicy::acceptance(int64_t depth) const {
  // Depth 1: the earlier requests' acceptance (from Beta(1, 1) before any). A deeper depth's prior
  // is centred on the depth above it (as strong as two steps): deeper drafts are examined only
  // when the shallower ones were accepted, so their own counts grow slowly, and their acceptance
  // is usually close (docs/FIDELITY.md).
  const std::size_t k = std::size_t(depth - 1);
  const double prior = depth == 1 ? first_depth_prior_ : acceptance(depth - 1);
  return (double(accepted_[k]) + 2.0 * prior) / (double(reached_[k]) + 2.0);
}

double DraftCountPolicy::expected_tokens(int64_t drafts) const {
  double tokens = 1.0, all_accepted = 1.0;
  for (int64_t k = 1; k <= drafts; ++k) {
    all_accepted *= acceptance(k);
    tokens += all_accepted;
  }
  return tokens;
}

double DraftCountPolicy::expected_seconds(int64_t drafts) const { return costs_->seconds(drafts); }

double DraftCountPolicy::expected_rate(int64_t drafts) const {
  const double seconds = costs_->seconds(drafts);
  return seconds > 0 ? expected_tokens(drafts) / seconds : 0.0;
}

int64_t DraftCountPolicy::choose(int64_t limit) const {
  const int64_t top = std::clamp<int64_t>(limit, 0, max_drafts_);
  // Measure every N a few times first, the deepest first and most (it measures every depth's acceptance).
  for (int64_t n = top; n >= 0; --n) {
    if (costs_->tries(n) < (n == max_drafts_ ? kDeepestTriesFirst : kTriesFirst)) return n;
  }
  int64_t best = 0;
  for (int64_t n = 1; n <= top; ++n) {
    if (expected_rate(n) > expected_rate(best)) best = n;
  }
  // Now and then another N again: the one measured longest ago among the contenders, else among
  // those not measured for kRetryStale steps.
  if (costs_->retry_due()) {
    costs_->start_retry();
    const int64_t steps = costs_->steps();
    auto oldest = [&](auto eligible) {
      int64_t found = -1;
      for (int64_t n = 0; n <= top; ++n) {
        if (n == best || !eligible(n)) continue;
        if (found < 0 || costs_->last_tried(n) < costs_->last_tried(found)) found = n;
      }
      return found;
    };
    int64_t retry = oldest([&](int64_t n) { return expected_rate(n) >= kRetryContender * expected_rate(best); });
    if (retry < 0) retry = oldest([&](int64_t n) { return steps - costs_->last_tried(n) >= kRetryStale; });
    if (retry >= 0) return retry;
  }
  if (top == max_drafts_) costs_->note_best(best);  // (a budget's last steps choose among fewer)
  return best;
}

void DraftCountPolicy::record(int64_t drafted, int64_t accepted, double step_seconds) {
  NEXTN_CHECK(drafted >= 0 && drafted <= max_drafts_ && accepted >= 0 && accepted <= drafted,
              "draft policy: ", accepted, " of ", drafted, " drafts accepted");
  for (int64_t k = 1; k <= drafted && k <= accepted + 1; ++k) {
    reached_[std::size_t(k - 1)] += 1;
    if (k <= accepted) accepted_[std::size_t(k - 1)] += 1;
  }
  costs_->record_acceptance(drafted, accepted);
  costs_->record(drafted, step_seconds);
}

}  // namespace nextn::inference
