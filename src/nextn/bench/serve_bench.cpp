#include "nextn/bench/serve_bench.h"

#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <sstream>
#include <thread>

#include "nextn/bench/median.h"
#include "nextn/bench/stream_client.h"
#include "nextn/util/error.h"

namespace nextn {
namespace {

using Clock = std::chrono::steady_clock;

// Prompts of varied length and content, so that the streams do not decode in lockstep.
const std::vector<std::string> kPrompts = {
    "def main():\n", "import os\nimport sys\n", "class Parser:\n    def __init__(self", "for key, value in ",
    "\"\"\"Utilities for", "    return self.", "if __name__ == '__main__':\n", "try:\n    import json\nexcept"};

struct Server {
  pid_t pid = -1;
  std::string url;
};

// `nextn serve` on a free port; returns once it prints that the model is ready. prefill_chunk and
// prefix_cache_mib < 0: the server's default.
Server start_server(const ServeBenchOptions& o, const std::string& drafts, int64_t prefill_chunk,
                    int64_t prefix_cache_mib) {
  int pipe_fds[2];
  NEXTN_CHECK(::pipe(pipe_fds) == 0, "bench serve: pipe: ", errno_text());
  std::vector<std::string> args = {o.binary, "serve", "--model", o.model, "--port", "0", "--served-model-name", "bench",
                                   "--max-batch", std::to_string(o.max_batch), "--max-queue", "256",
                                   "--precision", o.precision};
  if (drafts != "0") args.insert(args.end(), {"--speculative", "mtp", "--draft", drafts});
  if (prefill_chunk > 0) args.insert(args.end(), {"--prefill-chunk", std::to_string(prefill_chunk)});
  if (prefix_cache_mib >= 0) args.insert(args.end(), {"--prefix-cache-mb", std::to_string(prefix_cache_mib)});
  const pid_t pid = ::fork();
  NEXTN_CHECK(pid >= 0, "bench serve: fork: ", errno_text());
  if (pid == 0) {
    ::dup2(pipe_fds[1], 1);
    ::dup2(pipe_fds[1], 2);
    ::close(pipe_fds[0]);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(o.binary.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  std::string output;
  char buffer[4096];
  Server server{pid, ""};
  while (true) {
    const ssize_t n = ::read(pipe_fds[0], buffer, sizeof buffer);
    if (n <= 0) {
      ::close(pipe_fds[0]);
      fail("bench serve: the server did not start:\n", output);
    }
    output.append(buffer, static_cast<size_t>(n));
    const auto at = output.find("listening on http://");
    if (server.url.empty() && at != std::string::npos && output.find('\n', at) != std::string::npos) {
      server.url = output.substr(at + 13, output.find('\n', at) - at - 13);
    }
    if (!server.url.empty() && output.find("ready") != std::string::npos) break;
  }
  // The server keeps writing to the pipe: drain it on a thread of its own.
  std::thread([fd = pipe_fds[0]] {
    char sink[4096];
    while (::read(fd, sink, sizeof sink) > 0) {
    }
    ::close(fd);
  }).detach();
  return server;
}

void stop_server(const Server& server) {
  ::kill(server.pid, SIGTERM);
  int status = 0;
  ::waitpid(server.pid, &status, 0);
}

// The server of an http://host:port URL (a name, an IPv4 address or a bracketed IPv6 one).
StreamServer server_at(const std::string& url) {
  const auto colon = url.rfind(':');
  NEXTN_CHECK(url.rfind("http://", 0) == 0 && colon != std::string::npos && colon > 7, "bench serve: '", url,
              "': expected http://host:port");
  std::string host = url.substr(7, colon - 7);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return resolve_stream_server(host, std::stoi(url.substr(colon + 1)));
}

std::string request_body(const std::string& model, const nlohmann::json& prompt, int64_t max_tokens) {
  return nlohmann::json{{"model", model},   {"prompt", prompt},    {"max_tokens", max_tokens}, {"temperature", 0},
                        {"stream", true},   {"ignore_eos", true},  {"return_token_ids", true}}
      .dump();
}

// Request i's prompt: one of the short texts, or `tokens` random ids in [2, 256), ids that every
// byte-level vocabulary has (0 and 1 left out: the usual BOS / EOS): the first `shared` the same
// for every request, the rest seeded by i.
nlohmann::json prompt_for(int64_t i, int64_t tokens, int64_t shared) {
  if (tokens <= 0) return kPrompts[static_cast<size_t>(i) % kPrompts.size()];
  std::mt19937_64 common(0), own(static_cast<uint64_t>(i) + 1);
  std::vector<int64_t> ids;
  for (int64_t t = 0; t < tokens; ++t) ids.push_back(2 + static_cast<int64_t>((t < shared ? common() : own()) % 254));
  return ids;
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(p * static_cast<double>(values.size() - 1) + 0.5));
  return values[index];
}

// One sweep point: `concurrency` streams, each sending its requests one after another, all from
// this thread (stream_client.h).
struct Measurement {
  int64_t requests = 0, tokens = 0;
  double seconds = 0;
  std::vector<double> ttfts, gaps;
  double tokens_per_second() const { return seconds > 0 ? static_cast<double>(tokens) / seconds : 0.0; }
};

// `first_request` numbers the sweep's requests (random prompts differ between sweep points and
// rounds: only --shared-prefix repeats).
Measurement measure(const StreamServer& server, const std::string& model, int concurrency, const ServeBenchOptions& o,
                    int64_t first_request) {
  std::vector<std::vector<std::string>> bodies(concurrency);
  for (int c = 0; c < concurrency; ++c) {
    for (int r = 0; r < o.requests_per_client; ++r) {
      bodies[c].push_back(request_body(model, prompt_for(first_request + c * o.requests_per_client + r, o.prompt_tokens, o.shared_prefix), o.max_tokens));
    }
  }
  const auto started = Clock::now();
  const auto per_client = run_streams(server, "/v1/completions", bodies);
  Measurement m;
  m.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  for (const auto& results : per_client) {
    for (const StreamResult& r : results) {
      NEXTN_CHECK(r.ok, "bench serve: a request failed: ", r.error);
      ++m.requests;
      m.tokens += r.tokens;
      m.ttfts.push_back(r.ttft);
      m.gaps.insert(m.gaps.end(), r.token_gaps.begin(), r.token_gaps.end());
    }
  }
  return m;
}

// Every concurrency `rounds` times against one server, summarised per concurrency.
std::vector<ServeBenchRow> sweep(const StreamServer& server, const std::string& model, const std::string& variant,
                                 const ServeBenchOptions& o) {
  const size_t points = o.concurrency.size();
  std::vector<std::vector<Measurement>> by_point(points);
  int64_t requests = 0;
  for (int round = 0; round < o.rounds; ++round) {
    for (size_t i = 0; i < points; ++i) {
      by_point[i].push_back(measure(server, model, o.concurrency[i], o, requests));
      requests += o.concurrency[i] * o.requests_per_client;
    }
  }
  const auto one = std::find(o.concurrency.begin(), o.concurrency.end(), 1);
  std::vector<ServeBenchRow> rows;
  for (size_t i = 0; i < points; ++i) {
    ServeBenchRow row;
    row.variant = variant;
    row.concurrency = o.concurrency[i];
    std::vector<double> rates, ratios, ttfts, gaps;
    for (size_t round = 0; round < by_point[i].size(); ++round) {
      const Measurement& m = by_point[i][round];
      row.requests += m.requests;
      row.tokens += m.tokens;
      row.seconds += m.seconds;
      rates.push_back(m.tokens_per_second());
      if (one != o.concurrency.end()) {
        ratios.push_back(m.tokens_per_second() / by_point[one - o.concurrency.begin()][round].tokens_per_second());
      }
      ttfts.insert(ttfts.end(), m.ttfts.begin(), m.ttfts.end());
      gaps.insert(gaps.end(), m.gaps.begin(), m.gaps.end());
    }
    row.tokens_per_second = median(rates);
    row.vs_one_stream = median(ratios);
    row.ttft_p50 = percentile(ttfts, 0.5);
    row.ttft_p99 = percentile(ttfts, 0.99);
    row.itl_p50 = percentile(gaps, 0.5);
    row.itl_p99 = percentile(gaps, 0.99);
    row.itl_max = gaps.empty() ? 0.0 : *std::max_element(gaps.begin(), gaps.end());
    rows.push_back(row);
  }
  return rows;
}

}  // namespace

std::vector<ServeBenchRow> benchmark_serving(const ServeBenchOptions& o) {
  std::vector<ServeBenchRow> rows;
  if (!o.url.empty()) {
    const StreamServer server = server_at(o.url);
    // The address the streams will use: httplib alone tries a name's first address only.
    httplib::Client probe(server.address_text.empty() ? server.host : server.address_text, server.port);
    auto models = probe.Get("/v1/models");
    NEXTN_CHECK(models && models->status == 200, "bench serve: no server answers at ", o.url);
    const std::string model = nlohmann::json::parse(models->body)["data"][0]["id"];
    return sweep(server, model, "server at " + o.url, o);
  }
  for (int64_t chunk : o.prefill_chunks) NEXTN_CHECK(chunk >= 1, "bench serve: --prefill-chunk must be >= 1, got ", chunk);
  for (int64_t mib : o.prefix_cache_mib) NEXTN_CHECK(mib >= 0, "bench serve: --prefix-cache-mb must be >= 0, got ", mib);
  NEXTN_CHECK(o.shared_prefix >= 0 && o.shared_prefix <= o.prompt_tokens, "bench serve: --shared-prefix ",
              o.shared_prefix, " must be within --prompt-tokens ", o.prompt_tokens);
  std::vector<int64_t> chunks = o.prefill_chunks, caches = o.prefix_cache_mib;
  if (chunks.empty()) chunks.push_back(-1);  // the servers' defaults
  // The short text prompts repeat (a few texts over every stream and round), and the prefix cache
  // serves a repeated prompt without a forward: unless asked, their servers keep none, so that the
  // figures are of prompts computed. Random prompts are new in every request: the servers' own.
  const bool cache_asked = !caches.empty();
  if (caches.empty()) caches.push_back(o.prompt_tokens > 0 ? -1 : 0);
  for (const std::string& drafts : o.draft_variants) {
    NEXTN_CHECK(drafts == "auto" || (!drafts.empty() && drafts.find_first_not_of("0123456789") == std::string::npos),
                "bench serve: --drafts '", drafts, "': expected 0 (plain), a number of drafts or 'auto'");
  }
  for (const std::string& drafts : o.draft_variants) {
    for (int64_t chunk : chunks) {
      for (int64_t mib : caches) {
        Server server = start_server(o, drafts, chunk, mib);
        std::string variant = drafts == "0" ? "plain" : drafts == "auto" ? "MTP, auto" : "MTP, " + drafts + " draft(s)";
        if (chunk > 0) variant += ", chunk " + std::to_string(chunk);
        if (cache_asked && mib >= 0) variant += ", cache " + std::to_string(mib) + " MiB";
        try {
          const StreamServer target = server_at(server.url);
          // Warm-up: a prompt of the requests' kind (sharing their prefix, which a cache then holds).
          run_streams(target, "/v1/completions", {{request_body("bench", prompt_for(-1, o.prompt_tokens, o.shared_prefix), 8)}});
          for (const ServeBenchRow& row : sweep(target, "bench", variant, o)) rows.push_back(row);
        } catch (...) {
          stop_server(server);
          throw;
        }
        stop_server(server);
      }
    }
  }
  return rows;
}

std::string format_serve_bench(const std::vector<ServeBenchRow>& rows) {
  std::ostringstream out;
  char line[256];
  std::snprintf(line, sizeof line, "%-34s %7s %9s %10s %10s %10s %10s %9s %9s %9s\n", "variant", "streams", "requests",
                "tokens/s", "vs 1", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "ITL max");
  out << line;
  for (const auto& r : rows) {
    std::snprintf(line, sizeof line, "%-34s %7d %9lld %10.1f %9.2fx %8.1fms %8.1fms %7.2fms %7.2fms %7.1fms\n",
                  r.variant.c_str(), r.concurrency, static_cast<long long>(r.requests), r.tokens_per_second,
                  r.vs_one_stream, r.ttft_p50 * 1e3, r.ttft_p99 * 1e3, r.itl_p50 * 1e3, r.itl_p99 * 1e3,
                  r.itl_max * 1e3);
    out << line;
  }
  return out.str();
}

std::string serve_bench_json(const std::vector<ServeBenchRow>& rows) {
  std::ostringstream out;
  for (const auto& r : rows) {
    out << nlohmann::json{{"variant", r.variant},       {"streams", r.concurrency},     {"requests", r.requests},
                          {"tokens", r.tokens},         {"seconds", r.seconds},         {"tokens_per_second", r.tokens_per_second},
                          {"vs_one_stream", r.vs_one_stream},
                          {"ttft_p50", r.ttft_p50},     {"ttft_p99", r.ttft_p99},
                          {"itl_p50", r.itl_p50},       {"itl_p99", r.itl_p99},       {"itl_max", r.itl_max}}
               .dump()
        << "\n";
  }
  return out.str();
}

}  // namespace nextn
