// `nextn bench moe`: how one MoE layer's time grows with the number of routed experts at a fixed
// number of tokens, top-K and expert size. The activated compute (tokens x K expert MLPs) is the
// same at every size, so an ideal implementation takes the same time at 16, 32 and 64 experts;
// what grows is routing (the gate's [tokens, E] affinities), per-expert overhead and the weight
// gradients of experts that received few or no tokens. Sizes run interleaved (one step of each in
// turn) so that noise on a shared machine hits them alike; medians are reported.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nextn/config/model_config.h"
#include "nextn/device/precision.h"

namespace nextn {

struct MoeBenchOptions {
  int64_t tokens = 2048;                     // rows of the layer's input (batch x sequence)
  std::vector<int64_t> experts{16, 32, 64};  // routed experts per size; K and expert size fixed
  int64_t steps = 7;                         // timed steps per size
  int64_t warmup = 2;                        // untimed steps per size
  uint64_t seed = 0;
  Precision precision = Precision::kFp32;  // bf16: the forward under bf16 autocast, as training
};

struct MoeBenchResult {
  int64_t experts = 0, tokens = 0, top_k = 0;
  double fwd_bwd_seconds = 0, fwd_seconds = 0, bwd_seconds = 0;  // medians
  double route_seconds = 0, dispatch_seconds = 0, experts_seconds = 0, combine_seconds = 0;  // forward phases
  double experts_backward_seconds = 0;  // the grouped SwiGLU's backward (the rest of bwd: gate,
                                        // shared experts, dispatch/combine, gradient accumulation)
};

// `base` gives everything but n_routed_experts (hidden size, expert size, K, groups, shared experts).
std::vector<MoeBenchResult> benchmark_moe(const ModelConfig& base, const MoeBenchOptions& options);
// A table and the ratio of the largest size's time to the smallest's.
std::string format_moe_bench(const std::vector<MoeBenchResult>& results);
// One JSON object per line, one line per size (for bench/compare.sh).
std::string moe_bench_json(const std::vector<MoeBenchResult>& results);

}  // namespace nextn
