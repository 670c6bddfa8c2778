// `nextn bench train`: step time and tokens/s of training a config with and without its MTP
// modules, on random tokens, with a breakdown into forward, backward, optimizer and the MoE
// phases inside the forward. The variants run side by side (alternating steps) so that noise
// on a shared machine hits both alike; medians over the timed steps are reported.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nextn/config/model_config.h"

namespace nextn {

struct TrainBenchOptions {
  int64_t batch_size = 8;
  int64_t seq_len = 256;
  int64_t steps = 6;   // timed steps per variant
  int64_t warmup = 2;  // untimed steps per variant
  uint64_t seed = 0;
  std::string device = "cpu";  // cpu (fp32) or cuda[:N] (bf16 autocast, as nextn train)
  double peak_tflops = 0;      // the device's peak FLOP/s in TFLOP/s, for MFU (0: not reported)
};

struct TrainBenchResult {
  std::string variant;  // "MTP D=2" / "no MTP"
  int64_t tokens_per_step = 0;
  double step_seconds = 0;  // medians
  double forward_seconds = 0, backward_seconds = 0, optimizer_seconds = 0;
  double moe_route_seconds = 0, moe_dispatch_seconds = 0, moe_experts_seconds = 0, moe_combine_seconds = 0;
  int64_t flops_per_step = 0;  // model FLOPs of the step (training_step_flops)
  // The step's peak memory above what it started with (the largest over the timed steps; bytes
  // allocated on the step's thread, util/allocation_peak.h); -1 when the allocator cannot say.
  int64_t peak_bytes = -1;
  double tokens_per_second() const { return tokens_per_step / step_seconds; }
  double achieved_tflops() const { return flops_per_step / step_seconds / 1e12; }
};

std::vector<TrainBenchResult> benchmark_training(const ModelConfig& config, const TrainBenchOptions& options);
// peak_tflops > 0 adds model FLOPs utilisation: achieved model FLOP/s over that peak.
std::string format_train_bench(const std::vector<TrainBenchResult>& results, double peak_tflops = 0);
// One JSON object per line, one line per variant (for bench/compare.sh), times in seconds.
std::string train_bench_json(const std::vector<TrainBenchResult>& results);

}  // namespace nextn
