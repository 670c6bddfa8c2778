// `nextn bench train --nproc-per-node N [--expert-parallel E]`: training throughput of N ranks on
// this machine against one process using all its cores, on the same global batch and data. Both
// sides are real `nextn train` runs (the distributed one through the built-in launcher), run in
// alternating rounds so that a noisy machine hits both; each run's steps after the warm-up give
// a median tokens/s, communication share and all-to-all bytes per token (from metrics.jsonl).
// With E > 1 it then measures what node-limited routing saves: the all-to-all bytes per token at
// topk_group M = 1 .. n_group against unrestricted routing (n_group = 1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nextn {

struct ScalingBenchOptions {
  std::string config = "configs/small.json";
  std::string data = "data/python-stdlib";
  int nproc = 2;
  int expert_parallel = 1;
  int64_t batch_size = 8;  // global: each rank takes batch_size / nproc
  int64_t seq_len = 256;
  int64_t steps = 8;       // per run, warm-up included
  int64_t warmup = 3;
  int rounds = 2;
  int threads = 0;         // the one-process side's BLAS threads (0: all cores)
  std::string binary;      // the nextn executable to run
  std::string work_dir;    // run directories (removed afterwards)
};

struct ScalingRun {
  std::string variant;  // "1 process, 2 threads", "2 ranks (DP 1 x EP 2)", "EP 2, M=1 of 4 groups", ...
  double tokens_per_second = 0;
  double comm_share = 0;  // of the step's time, waiting for collectives
  double all_to_all_bytes_per_token = 0;
};

struct ScalingBenchResult {
  std::vector<ScalingRun> throughput;  // one process, then the distributed job (medians over rounds)
  double ratio = 0;                    // distributed tokens/s over one process's
  std::vector<ScalingRun> node_limit;  // E > 1: bytes per token against M
};

ScalingBenchResult benchmark_scaling(const ScalingBenchOptions& options);
std::string format_scaling_bench(const ScalingBenchOptions& options, const ScalingBenchResult& result);
std::string scaling_bench_json(const ScalingBenchResult& result);

}  // namespace nextn
