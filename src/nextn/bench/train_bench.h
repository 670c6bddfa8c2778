// `nextn bench train`: step time and tokens/s of training a config with and without its MTP
// modules, on random tokens, with a breakdown into forward, backward, optimizer and the MoE
// phases inside the forward. The variants run side by side (alternating steps) so that noise
// on a shared machine hits both alike; medians over the timed steps are reported.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nextn/config/model_config.h"
#include "nextn/device/precision.h"

namespace nextn {

struct TrainBenchOptions {
  int64_t batch_size = 8;
  int64_t seq_len = 256;
  int64_t steps = 6;   // timed steps per variant
  int64_t warmup = 2;  // untimed steps per variant
  uint64_t seed = 0;
  std::string device = "cpu";  // cpu or cuda[:N]
  // Each precision's variants side by side (the unfused head only in the first); empty: the
  // device's default precision alone.
  std::vector<Precision> precisions;
  // The libraries of fp32 products on CPU (device/cpu_gemm.h): fp32's variants with the first,
  // and its MTP and no-MTP variants again with each other, side by side; empty: the training
  // default alone. bf16 variants take the first (their few fp32 products, such as the router's).
  std::vector<CpuFp32Gemm> fp32_gemms;
  double peak_tflops = 0;      // the device's peak FLOP/s in TFLOP/s, for MFU (0: not reported)
  int profile_top = 0;         // > 0: one more step per variant under the operator profiler, its top ops
};

struct TrainBenchResult {
  std::string variant;  // "MTP D=2" / "MTP D=2 unfused" / "no MTP", " bf16" appended in bf16, " blas" /
                        // " onednn" for fp32 variants on another than the first fp32 gemm
  std::string products;  // the step's products: "bf16", "fp32 onednn" or "fp32 blas"
  int64_t tokens_per_step = 0;
  double step_seconds = 0;  // medians
  double forward_seconds = 0, backward_seconds = 0, optimizer_seconds = 0;
  double moe_route_seconds = 0, moe_dispatch_seconds = 0, moe_experts_seconds = 0, moe_combine_seconds = 0;
  int64_t flops_per_step = 0;  // model FLOPs of the step (training_step_flops)
  // The step's peak memory above what it started with (the largest over the timed steps; bytes
  // allocated on the step's thread, util/allocation_peak.h); -1 when the allocator cannot say.
  int64_t peak_bytes = -1;
  // bf16 variants: the fraction of expert choices (over every MoE layer and token of the batch)
  // that differ from the same model's fp32 forward; -1 for fp32 variants.
  double routing_changed = -1;
  // The measured FLOP/s of one large matrix product in the variant's precision on this device
  // (a [2048, 1024] x [1024, 4096] product, the best of 3), TFLOP/s: the step's ceiling.
  double product_peak_tflops = 0;
  std::string profile;  // the operator profile of one step (profile_top > 0), else empty
  double tokens_per_second() const { return tokens_per_step / step_seconds; }
  double achieved_tflops() const { return flops_per_step / step_seconds / 1e12; }
};

std::vector<TrainBenchResult> benchmark_training(const ModelConfig& config, const TrainBenchOptions& options);
// peak_tflops > 0 adds model FLOPs utilisation: achieved model FLOP/s over that peak.
std::string format_train_bench(const std::vector<TrainBenchResult>& results, double peak_tflops = 0);
// One JSON object per line, one line per variant (for bench/compare.sh), times in seconds.
std::string train_bench_json(const std::vector<TrainBenchResult>& results);

}  // namespace nextn
