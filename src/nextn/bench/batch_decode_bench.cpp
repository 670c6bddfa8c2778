#include "nextn/bench/batch_decode_bench.h"

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <sstream>

#include "nextn/bench/median.h"
#include "nextn/inference/batched_forward.h"
#include "nextn/inference/plain_decoder.h"
#include "nextn/util/error.h"
#include "nextn/util/op_profiler.h"
#include "nextn/util/phase_timer.h"
#include "nextn/util/runtime_info.h"

namespace nextn {
namespace {

using Clock = std::chrono::steady_clock;

inference::SamplingOptions greedy() {
  inference::SamplingOptions sampling;
  sampling.temperature = 0.0;
  return sampling;
}

std::vector<int64_t> prompt_of_sequence(const std::vector<int64_t>& prompt, int64_t sequence, int64_t vocab_size) {
  std::vector<int64_t> p = prompt;
  p.push_back((1 + 7919 * sequence) % vocab_size);  // a different last token per sequence
  return p;
}

struct Batch {
  std::vector<std::unique_ptr<inference::PlainDecoder>> decoders;
};

Batch start_batch(DeepSeekV3 model, const std::vector<int64_t>& prompt, int64_t batch, int64_t new_tokens) {
  Batch b;
  for (int64_t s = 0; s < batch; ++s) {
    const auto p = prompt_of_sequence(prompt, s, model->config().vocab_size);
    auto decoder = std::make_unique<inference::PlainDecoder>(model, greedy(),
                                                             static_cast<int64_t>(p.size()) + new_tokens);
    decoder->start(p);
    b.decoders.push_back(std::move(decoder));
  }
  return b;
}

// new_tokens - 1 batched steps (the prefill made each sequence's first token); returns seconds.
double decode_batch(DeepSeekV3 model, Batch& b, int64_t new_tokens) {
  std::optional<ScopedBlasThreads> blas_threads;  // as the server steps (server/engine.cpp)
  if (model->embed_tokens->weight.device().is_cpu()) blas_threads.emplace(1);
  const auto started = Clock::now();
  for (int64_t t = 1; t < new_tokens; ++t) {
    std::vector<inference::BatchedSequence> inputs;
    for (auto& d : b.decoders) inputs.push_back(d->batched_input());
    inference::BatchedStep out = inference::run_main_model_batched(*model, inputs);
    for (size_t s = 0; s < b.decoders.size(); ++s) b.decoders[s]->finish_batched_step(out.logits[out.first_row[s]], 0.0);
  }
  return std::chrono::duration<double>(Clock::now() - started).count();
}

}  // namespace

std::vector<BatchDecodeBenchResult> benchmark_batched_decoding(DeepSeekV3 model, const std::vector<int64_t>& prompt,
                                                               const BatchDecodeBenchOptions& options) {
  NEXTN_CHECK(options.new_tokens >= 2, "bench decode: --new-tokens must be >= 2, got ", options.new_tokens);
  NEXTN_CHECK(options.repeats >= 1, "bench decode: --repeats must be >= 1, got ", options.repeats);
  // Batch 1 first: the reference every ratio is taken against.
  std::vector<int64_t> sizes{1};
  for (int64_t b : options.batch_sizes) {
    if (b != 1) sizes.push_back(b);
  }
  int64_t largest = 0;
  for (int64_t b : sizes) {
    NEXTN_CHECK(b >= 1, "bench decode: --batch sizes must be >= 1, got ", b);
    largest = std::max(largest, b);
  }
  // Each sequence decoded alone: what every batched sequence must reproduce token for token.
  std::vector<std::vector<int64_t>> alone;
  for (int64_t s = 0; s < largest; ++s) {
    const auto p = prompt_of_sequence(prompt, s, model->config().vocab_size);
    inference::PlainDecoder decoder(model, greedy(), static_cast<int64_t>(p.size()) + options.new_tokens);
    decoder.start(p);
    while (static_cast<int64_t>(decoder.tokens().size()) < static_cast<int64_t>(p.size()) + options.new_tokens) {
      decoder.step(1);
    }
    alone.push_back(decoder.tokens());
  }

  const size_t n = sizes.size();
  std::vector<std::vector<double>> tokens_per_second(n);
  std::vector<bool> same(n, true);
  for (int64_t r = 0; r < options.repeats; ++r) {
    for (size_t i = 0; i < n; ++i) {
      const int64_t batch = sizes[i];
      Batch b = start_batch(model, prompt, batch, options.new_tokens);
      const double seconds = decode_batch(model, b, options.new_tokens);
      tokens_per_second[i].push_back(static_cast<double>(batch * (options.new_tokens - 1)) / seconds);
      for (int64_t s = 0; s < batch; ++s) {
        if (b.decoders[s]->tokens() != alone[s]) same[i] = false;
      }
    }
  }
  std::vector<BatchDecodeBenchResult> results;
  for (size_t i = 0; i < n; ++i) {
    BatchDecodeBenchResult result;
    result.batch = sizes[i];
    result.tokens_per_second = median(tokens_per_second[i]);
    result.step_ms = 1e3 * static_cast<double>(result.batch) / result.tokens_per_second;  // of the median run
    std::vector<double> ratios;
    for (size_t r = 0; r < tokens_per_second[i].size(); ++r) ratios.push_back(tokens_per_second[i][r] / tokens_per_second[0][r]);
    result.vs_batch_one = median(ratios);
    result.same_output_as_alone = same[i];
    results.push_back(result);
  }
  return results;
}

std::string format_batch_decode_bench(const std::vector<BatchDecodeBenchResult>& results) {
  std::ostringstream out;
  out << "batch   tokens/s   step ms  vs batch 1  outputs\n";
  for (const auto& r : results) {
    char line[160];
    std::snprintf(line, sizeof(line), "%5lld %10.1f %9.3f %10.2fx  %s\n", static_cast<long long>(r.batch),
                  r.tokens_per_second, r.step_ms, r.vs_batch_one,
                  r.same_output_as_alone ? "same as alone" : "DIFFER FROM DECODING ALONE");
    out << line;
  }
  return out.str();
}

std::string batch_decode_bench_json(const std::vector<BatchDecodeBenchResult>& results) {
  std::ostringstream out;
  for (const auto& r : results) {
    char line[200];
    std::snprintf(line, sizeof(line),
                  "{\"batch\":%lld,\"tokens_per_second\":%.3f,\"step_ms\":%.4f,\"vs_batch_one\":%.4f,"
                  "\"same_output_as_alone\":%s}\n",
                  static_cast<long long>(r.batch), r.tokens_per_second, r.step_ms, r.vs_batch_one,
                  r.same_output_as_alone ? "true" : "false");
    out << line;
  }
  return out.str();
}

std::string profile_batched_decoding(DeepSeekV3 model, const std::vector<int64_t>& prompt, int64_t batch,
                                     int64_t new_tokens, int top) {
  NEXTN_CHECK(batch >= 1 && new_tokens >= 2, "bench decode: a profile needs --batch >= 1 and --new-tokens >= 2");
  Batch b = start_batch(model, prompt, batch, new_tokens);
  std::string report;
  double seconds = 0;
  auto& phases = PhaseTimes::global();
  phases.reset();
  phases.enable(true);
  {
    OpProfiler profiler;
    seconds = decode_batch(model, b, new_tokens);
    report = profiler.report(top, static_cast<double>(new_tokens - 1), "step");
  }
  phases.enable(false);
  // Where a step's wall time goes by part of the model (phases nest: moe.* lie inside decode.moe).
  std::ostringstream by_phase;
  by_phase << "phase                                        us/step\n";
  for (const auto& [name, phase_seconds] : phases.all()) {
    char line[120];
    std::snprintf(line, sizeof(line), "%-40s %11.1f\n", name.c_str(), 1e6 * phase_seconds / static_cast<double>(new_tokens - 1));
    by_phase << line;
  }
  phases.reset();
  report = by_phase.str() + report;
  char head[160];
  std::snprintf(head, sizeof(head), "batch %lld: %lld steps, %.3f ms per step with the profiler on\n",
                static_cast<long long>(batch), static_cast<long long>(new_tokens - 1),
                1e3 * seconds / static_cast<double>(new_tokens - 1));
  return head + report;
}

}  // namespace nextn
