// What the dashboard shows of a running `nextn serve`: its Prometheus page (/metrics), read and
// reduced to the counters the page turns into rates (tokens/s, acceptance per MTP depth).
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

namespace nextn::dashboard {

struct PrometheusSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Parses the Prometheus text exposition format (version 0.0.4): comments, `name value`,
// `name{label="v",...} value [timestamp]`. Throws nextn::Error naming the line that is malformed.
std::vector<PrometheusSample> parse_prometheus_text(const std::string& text);

// The figures the page plots, from one read of a server's metrics:
// {"generated_tokens", "prompt_tokens", "requests", "running", "queued", "batch_size",
//  "drafted": [per depth], "accepted": [per depth]}.
nlohmann::json summarize_server_metrics(const std::vector<PrometheusSample>& samples);

// GETs `url`/metrics (url: "http://host:port") with a short timeout. Returns
// {"ok": true, "url", "time": unix seconds, ...summarize_server_metrics} or {"ok": false, "url", "error"}.
nlohmann::json probe_server(const std::string& url);

}  // namespace nextn::dashboard
