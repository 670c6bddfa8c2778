// `nextn bench decode --batch B ...`: plain decoding of B sequences at once, each step one batched
// forward of the main model (run_main_model_batched, the server's continuous-batching step), at
// several B side by side in one run. It measures what batching gives the model itself, without
// the HTTP, JSON and client threads that `bench serve` also counts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nextn/model/deepseek_v3.h"

namespace nextn {

struct BatchDecodeBenchOptions {
  std::vector<int64_t> batch_sizes{1, 2, 4, 8, 16};
  int64_t new_tokens = 128;  // per sequence (greedy, no stop token)
  int64_t repeats = 3;       // runs per batch size, alternating; medians reported
};

struct BatchDecodeBenchResult {
  int64_t batch = 1;
  double tokens_per_second = 0;  // all sequences' tokens over the decoding time, median
  double step_ms = 0;            // per batched step of the median run: batch / tokens_per_second
  double vs_batch_one = 1;       // median over repeats of tokens/s over batch 1's in the same repeat
  bool same_output_as_alone = true;  // every sequence's tokens equal decoding it alone
};

// Sequence s of a batch decodes `prompt` followed by one token that differs per sequence, so the
// sequences route to different experts as a server's requests do. The model must be in eval mode.
std::vector<BatchDecodeBenchResult> benchmark_batched_decoding(DeepSeekV3 model, const std::vector<int64_t>& prompt,
                                                               const BatchDecodeBenchOptions& options);
std::string format_batch_decode_bench(const std::vector<BatchDecodeBenchResult>& results);
std::string batch_decode_bench_json(const std::vector<BatchDecodeBenchResult>& results);
// The operators of one batched step of `batch` sequences (counts and times per step, top `top`).
std::string profile_batched_decoding(DeepSeekV3 model, const std::vector<int64_t>& prompt, int64_t batch,
                                     int64_t new_tokens, int top);

}  // namespace nextn
