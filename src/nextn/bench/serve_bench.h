// `nextn bench serve`: a load generator against `nextn serve`. For each server variant (plain
// decoding, MTP drafting with N drafts, or with the adaptive count) it starts the server on a free
// port, then for each concurrency c runs c streams from one client thread (stream_client.h), each
// streaming `requests_per_client` greedy completions one after another (ignore_eos, so every
// request makes max_tokens tokens), and measures the aggregate generated
// tokens per second over the wall time, each request's time to first token (p50, p99) and the
// gaps between its tokens (inter-token latency: p50, p99, the longest). --prompt-tokens N sends
// prompts of N random token ids instead of short texts (vLLM's random dataset), and each
// --prefill-chunk value starts the servers once more with it: long prompts' prefills, whole or in
// chunks, against the decoding of the streams already running; --shared-prefix K makes their
// first K tokens common to all requests, and each --prefix-cache-mb value a server of its own.
// With --url it measures a server that is already running instead (one variant).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nextn {

struct ServeBenchOptions {
  std::string model;                          // served by the started servers
  std::string url;                            // or: an already running server (http://host:port)
  std::vector<int> concurrency = {1, 4, 8, 16};
  int64_t max_tokens = 64;
  int requests_per_client = 2;
  // "0": plain; "N" or "auto": --speculative mtp --draft N / auto
  std::vector<std::string> draft_variants = {"0", "auto"};
  int max_batch = 16;
  std::string precision = "auto";  // the started servers' --precision (decoding's weights)
  int64_t prompt_tokens = 0;       // > 0: prompts of this many random token ids; 0: short texts
  int64_t shared_prefix = 0;       // of them, the first this many the same in every request (a system prompt)
  // The started servers' --prefill-chunk, one server per value and draft variant (empty: the default).
  std::vector<int64_t> prefill_chunks;
  // The started servers' --prefix-cache-mb, one server per value (empty: the default).
  std::vector<int64_t> prefix_cache_mib;
  // Sweeps over `concurrency` per server, one after another: medians are reported, and each
  // round's ratio to its own 1-stream figure (this machine's speed drifts between phases).
  int rounds = 1;
  std::string binary;  // the nextn executable
};

struct ServeBenchRow {
  std::string variant;
  int concurrency = 0;
  int64_t requests = 0, tokens = 0;
  double seconds = 0;
  double tokens_per_second = 0;       // median over rounds
  double vs_one_stream = 0;           // median over rounds of tokens/s over that round's 1 stream (0: none measured)
  double ttft_p50 = 0, ttft_p99 = 0;  // seconds, over every request of every round
  double itl_p50 = 0, itl_p99 = 0, itl_max = 0;  // seconds between a request's tokens, over all of them
};

std::vector<ServeBenchRow> benchmark_serving(const ServeBenchOptions& options);
std::string format_serve_bench(const std::vector<ServeBenchRow>& rows);
std::string serve_bench_json(const std::vector<ServeBenchRow>& rows);

}  // namespace nextn
