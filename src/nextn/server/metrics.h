// What the server exposes at GET /metrics, in Prometheus's text format (version 0.0.4): requests by
// endpoint and status, prompt and generated tokens, time-to-first-token and inter-token latency
// histograms, running and queued requests, the batch size of the latest step, drafted and
// accepted tokens per MTP depth, and the prefix cache's reused tokens and bytes. Names start with nextn_; thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace nextn::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  // The metric's lines: _bucket{le=...} (cumulative), _sum, _count.
  std::string render(const std::string& name) const;

 private:
  std::vector<double> bounds_;
  std::vector<int64_t> counts_;  // per bucket, not cumulative; the last is +Inf
  double sum_ = 0;
  int64_t count_ = 0;
};

struct EngineGauges {
  int64_t running = 0, queued = 0, batch_size = 0, steps = 0, prefix_cache_bytes = 0;
};

class Metrics {
 public:
  Metrics();
  void request(const std::string& endpoint, int status);
  // cached_prompt: of the prompt tokens, those copied from the prefix cache.
  void tokens(int64_t prompt, int64_t generated, int64_t cached_prompt = 0);
  void cancelled();  // a request whose client went away
  void time_to_first_token(double seconds);
  void inter_token_latency(double seconds);
  void speculative(const std::vector<int64_t>& drafted, const std::vector<int64_t>& accepted);
  std::string render(const EngineGauges& engine) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  int64_t prompt_tokens_ = 0, cached_prompt_tokens_ = 0, generated_tokens_ = 0, cancelled_ = 0;
  Histogram ttft_, itl_;
  std::vector<int64_t> drafted_, accepted_;
};

}  // namespace nextn::server
