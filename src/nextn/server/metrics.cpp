#include "nextn/server/metrics.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace nextn::server {
namespace {

std::string number(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.9g", v);
  return buffer;
}

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  const size_t bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++counts_[bucket];
  sum_ += value;
  ++count_;
}

std::string Histogram::render(const std::string& name) const {
  std::ostringstream out;
  int64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out << name << "_bucket{le=\"" << number(bounds_[i]) << "\"} " << cumulative << "\n";
  }
  out << name << "_bucket{le=\"+Inf\"} " << count_ << "\n"
      << name << "_sum " << number(sum_) << "\n"
      << name << "_count " << count_ << "\n";
  return out.str();
}

Metrics::Metrics()
    : ttft_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      itl_({0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}) {}

void Metrics::request(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{endpoint, status}];
}

void Metrics::tokens(int64_t prompt, int64_t generated, int64_t cached_prompt) {
  std::lock_guard<std::mutex> lock(mutex_);
  prompt_tokens_ += prompt;
  cached_prompt_tokens_ += cached_prompt;
  generated_tokens_ += generated;
}

void Metrics::cancelled() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++cancelled_;
}

void Metrics::time_to_first_token(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ttft_.observe(seconds);
}

void Metrics::inter_token_latency(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  itl_.observe(seconds);
}

void Metrics::speculative(const std::vector<int64_t>& drafted, const std::vector<int64_t>& accepted) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (drafted_.size() < drafted.size()) drafted_.resize(drafted.size(), 0);
  if (accepted_.size() < accepted.size()) accepted_.resize(accepted.size(), 0);
  for (size_t k = 0; k < drafted.size(); ++k) drafted_[k] += drafted[k];
  for (size_t k = 0; k < accepted.size(); ++k) accepted_[k] += accepted[k];
}

std::string Metrics::render(const EngineGauges& engine) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::ostringstream out;
  out << "# HELP nextn_requests_total Requests answered, by endpoint and HTTP status.\n"
      << "# TYPE nextn_requests_total counter\n";
  for (const auto& [key, count] : requests_) {
    out << "nextn_requests_total{endpoint=\"" << key.first << "\",status=\"" << key.second << "\"} " << count << "\n";
  }
  out << "# HELP nextn_prompt_tokens_total Prompt tokens of finished requests.\n"
      << "# TYPE nextn_prompt_tokens_total counter\nnextn_prompt_tokens_total " << prompt_tokens_ << "\n"
      << "# HELP nextn_prompt_tokens_cached_total Prompt tokens of finished requests copied from the prefix cache.\n"
      << "# TYPE nextn_prompt_tokens_cached_total counter\nnextn_prompt_tokens_cached_total " << cached_prompt_tokens_
      << "\n"
      << "# HELP nextn_prefix_cache_bytes Bytes held by prompt chunks kept for reuse.\n"
      << "# TYPE nextn_prefix_cache_bytes gauge\nnextn_prefix_cache_bytes " << engine.prefix_cache_bytes << "\n"
      << "# HELP nextn_generation_tokens_total Tokens generated.\n"
      << "# TYPE nextn_generation_tokens_total counter\nnextn_generation_tokens_total " << generated_tokens_ << "\n"
      << "# HELP nextn_requests_cancelled_total Requests stopped because their client went away.\n"
      << "# TYPE nextn_requests_cancelled_total counter\nnextn_requests_cancelled_total " << cancelled_ << "\n"
      << "# HELP nextn_time_to_first_token_seconds From the request's arrival to its first token.\n"
      << "# TYPE nextn_time_to_first_token_seconds histogram\n"
      << ttft_.render("nextn_time_to_first_token_seconds")
      << "# HELP nextn_inter_token_latency_seconds Between consecutive tokens of a request.\n"
      << "# TYPE nextn_inter_token_latency_seconds histogram\n"
      << itl_.render("nextn_inter_token_latency_seconds")
      << "# HELP nextn_requests_running Requests decoding now.\n"
      << "# TYPE nextn_requests_running gauge\nnextn_requests_running " << engine.running << "\n"
      << "# HELP nextn_requests_queued Requests waiting for a place.\n"
      << "# TYPE nextn_requests_queued gauge\nnextn_requests_queued " << engine.queued << "\n"
      << "# HELP nextn_batch_size Sequences in the latest batched decoding step.\n"
      << "# TYPE nextn_batch_size gauge\nnextn_batch_size " << engine.batch_size << "\n"
      << "# HELP nextn_engine_steps_total Decoding steps of the engine.\n"
      << "# TYPE nextn_engine_steps_total counter\nnextn_engine_steps_total " << engine.steps << "\n"
      << "# HELP nextn_spec_draft_tokens_total Tokens drafted by the MTP modules, by depth.\n"
      << "# TYPE nextn_spec_draft_tokens_total counter\n";
  for (size_t k = 0; k < drafted_.size(); ++k) {
    out << "nextn_spec_draft_tokens_total{depth=\"" << k + 1 << "\"} " << drafted_[k] << "\n";
  }
  out << "# HELP nextn_spec_accepted_tokens_total Drafted tokens the model accepted, by depth.\n"
      << "# TYPE nextn_spec_accepted_tokens_total counter\n";
  for (size_t k = 0; k < accepted_.size(); ++k) {
    out << "nextn_spec_accepted_tokens_total{depth=\"" << k + 1 << "\"} " << accepted_[k] << "\n";
  }
  return out.str();
}

}  // namespace nextn::server
