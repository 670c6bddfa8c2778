#include "nextn/dashboard/server_probe.h"

#include <httplib.h>

#include <chrono>
#include <cmath>
#include <cstdlib>

#include "nextn/util/error.h"

namespace nextn::dashboard {
namespace {

bool name_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (!first && c >= '0' && c <= '9');
}

double parse_value(const std::string& text, size_t line_number) {
  if (text == "+Inf" || text == "Inf") return INFINITY;
  if (text == "-Inf") return -INFINITY;
  if (text == "NaN") return NAN;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  NEXTN_CHECK(!text.empty() && end == text.c_str() + text.size(), "metrics line ", line_number, ": value '", text,
              "' is not a number");
  return v;
}

// Reads `{a="x",b="y"}` from line[pos] (at the '{'); returns the position after the '}'.
size_t parse_labels(const std::string& line, size_t pos, size_t line_number, std::map<std::string, std::string>& labels) {
  ++pos;
  while (true) {
    if (pos < line.size() && line[pos] == '}') return pos + 1;
    size_t start = pos;
    while (pos < line.size() && name_char(line[pos], pos == start)) ++pos;
    NEXTN_CHECK(pos > start && pos + 1 < line.size() && line[pos] == '=' && line[pos + 1] == '"', "metrics line ",
                line_number, ": malformed label");
    std::string key = line.substr(start, pos - start), value;
    pos += 2;
    while (pos < line.size() && line[pos] != '"') {
      if (line[pos] == '\\' && pos + 1 < line.size()) {
        ++pos;
        value += line[pos] == 'n' ? '\n' : line[pos];
      } else {
        value += line[pos];
      }
      ++pos;
    }
    NEXTN_CHECK(pos < line.size(), "metrics line ", line_number, ": unterminated label value");
    ++pos;
    labels[key] = value;
    if (pos < line.size() && line[pos] == ',') ++pos;
  }
}

}  // namespace

std::vector<PrometheusSample> parse_prometheus_text(const std::string& text) {
  std::vector<PrometheusSample> samples;
  size_t line_number = 0, begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(begin, end - begin);
    begin = end + 1;
    ++line_number;
    // Surrounding whitespace and a CR (CRLF line ends) are not part of the sample.
    const size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos) continue;
    line = line.substr(first, line.find_last_not_of(" \t\r") - first + 1);
    if (line[0] == '#') continue;
    PrometheusSample sample;
    size_t pos = 0;
    while (pos < line.size() && name_char(line[pos], pos == 0)) ++pos;
    NEXTN_CHECK(pos > 0, "metrics line ", line_number, ": no metric name");
    sample.name = line.substr(0, pos);
    if (pos < line.size() && line[pos] == '{') pos = parse_labels(line, pos, line_number, sample.labels);
    NEXTN_CHECK(pos < line.size() && (line[pos] == ' ' || line[pos] == '\t'), "metrics line ", line_number,
                ": no value after '", sample.name, "'");
    const size_t value_start = line.find_first_not_of(" \t", pos);
    const size_t value_end = line.find_first_of(" \t", value_start);  // a timestamp may follow
    sample.value = parse_value(line.substr(value_start, value_end == std::string::npos ? std::string::npos
                                                                                        : value_end - value_start),
                               line_number);
    samples.push_back(std::move(sample));
  }
  return samples;
}

nlohmann::json summarize_server_metrics(const std::vector<PrometheusSample>& samples) {
  nlohmann::json out = {{"generated_tokens", 0.0}, {"prompt_tokens", 0.0}, {"requests", 0.0}, {"running", 0.0},
                        {"queued", 0.0},           {"batch_size", 0.0},   {"drafted", nlohmann::json::array()},
                        {"accepted", nlohmann::json::array()}};
  auto per_depth = [](nlohmann::json& list, const PrometheusSample& s) {
    auto it = s.labels.find("depth");
    if (it == s.labels.end()) return;
    const int depth = std::atoi(it->second.c_str());
    if (depth < 1 || depth > 64) return;
    while (list.size() < static_cast<size_t>(depth)) list.push_back(0.0);
    list[depth - 1] = s.value;
  };
  for (const auto& s : samples) {
    if (s.name == "nextn_generation_tokens_total") out["generated_tokens"] = s.value;
    if (s.name == "nextn_prompt_tokens_total") out["prompt_tokens"] = s.value;
    if (s.name == "nextn_requests_total") out["requests"] = out["requests"].get<double>() + s.value;
    if (s.name == "nextn_requests_running") out["running"] = s.value;
    if (s.name == "nextn_requests_queued") out["queued"] = s.value;
    if (s.name == "nextn_batch_size") out["batch_size"] = s.value;
    if (s.name == "nextn_spec_draft_tokens_total") per_depth(out["drafted"], s);
    if (s.name == "nextn_spec_accepted_tokens_total") per_depth(out["accepted"], s);
  }
  return out;
}

nlohmann::json probe_server(const std::string& url) {
  nlohmann::json out = {{"ok", false}, {"url", url}};
  try {
    httplib::Client client(url);
    client.set_connection_timeout(1, 0);
    client.set_read_timeout(2, 0);
    auto response = client.Get("/metrics");
    if (!response) {
      out["error"] = "no answer from " + url + " (" + httplib::to_string(response.error()) + ")";
      return out;
    }
    if (response->status != 200) {
      out["error"] = url + "/metrics answered " + std::to_string(response->status);
      return out;
    }
    out.update(summarize_server_metrics(parse_prometheus_text(response->body)));
    out["ok"] = true;
    out["time"] = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  } catch (const std::exception& e) {
    out["error"] = url + "/metrics: " + e.what();
  }
  return out;
}

}  // namespace nextn::dashboard
