// `nextn bench train`: training step time with and without MTP, with a breakdown.
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "command_registry.h"
#include "nextn/bench/scaling_bench.h"
#include "nextn/bench/train_bench.h"
#include "nextn/util/runtime_info.h"

namespace nextn::cli {
namespace {

void setup_bench_train(CLI::App& app) {
  CLI::App& bench = command_group(app, "bench", "Benchmarks (figures for docs/BENCHMARKS.md)");
  auto* cmd = bench.add_subcommand("train", "Training step time of a config with and without MTP, with a breakdown");
  struct Flags {
    std::string config = "configs/small.json";
    TrainBenchOptions options;
    int threads = 0;
    bool json = false;
    ScalingBenchOptions scaling;
    int nproc = 1;  // > 1: the scaling comparison (scaling.nproc's own default is 2)
    std::vector<std::string> precisions;
    std::vector<std::string> fp32_gemms;
  };
  auto f = std::make_shared<Flags>();
  cmd->add_option("--config", f->config, "model config.json");
  cmd->add_option("--batch-size", f->options.batch_size, "sequences per step");
  cmd->add_option("--seq-len", f->options.seq_len, "tokens per sequence");
  cmd->add_option("--steps", f->options.steps, "timed steps per variant");
  cmd->add_option("--warmup", f->options.warmup, "untimed steps per variant");
  cmd->add_flag("--json", f->json, "one JSON object per variant and line, nothing else");
  add_threads_option(*cmd, f->threads);
  cmd->add_option("--device", f->options.device, "cpu or cuda[:N]");
  cmd->add_option("--precision", f->precisions,
                  "precisions whose variants run side by side: fp32, bf16 or fp32,bf16 (default: fp32,bf16 on "
                  "CPU, bf16 on CUDA)")
      ->delimiter(',');
  cmd->add_option("--fp32-gemm", f->fp32_gemms,
                  "libraries of fp32 products on CPU whose fp32 variants run side by side: onednn, blas or "
                  "onednn,blas (default: onednn where built)")
      ->delimiter(',');
  cmd->add_option("--nproc-per-node", f->nproc,
                  "compare N ranks on this machine (real `nextn train` runs, global batch = --batch-size) with "
                  "one process on all cores")
      ->check(positive());
  cmd->add_option("--expert-parallel", f->scaling.expert_parallel,
                  "with --nproc-per-node: split the experts over E ranks, and measure node-limited routing's bytes")
      ->check(positive());
  cmd->add_option("--data", f->scaling.data, "with --nproc-per-node: the dataset to train on");
  cmd->add_option("--rounds", f->scaling.rounds, "with --nproc-per-node: alternating rounds of both sides")
      ->check(positive());
  cmd->add_option("--profile", f->options.profile_top,
                  "after the timed steps, one step per variant under the operator profiler: its N costliest operators")
      ->check(non_negative());
  cmd->add_option("--peak-tflops", f->options.peak_tflops,
                  "the device's peak TFLOP/s for the step's precision, to report MFU (e.g. 989 for an H100 "
                  "SXM in bf16)")
      ->check(non_negative());
  cmd->callback([f] {
    if (f->nproc > 1) {
      ScalingBenchOptions o = f->scaling;
      o.nproc = f->nproc;
      o.config = f->config;
      o.batch_size = f->options.batch_size;
      o.seq_len = f->options.seq_len;
      o.steps = f->options.warmup + f->options.steps;
      o.warmup = f->options.warmup + 1;  // the launcher's first step also starts the process groups
      o.threads = f->threads;
      o.binary = std::filesystem::read_symlink("/proc/self/exe").string();
      o.work_dir = (std::filesystem::temp_directory_path() / ("nextn-bench-scaling-" + std::to_string(::getpid()))).string();
      ScalingBenchResult result = benchmark_scaling(o);
      std::filesystem::remove_all(o.work_dir);
      if (f->json) {
        std::cout << scaling_bench_json(result);
        return;
      }
      std::cout << describe(runtime_info()) << "\n"
                << "nextn bench train --config " << o.config << " --data " << o.data << " --batch-size " << o.batch_size
                << " --seq-len " << o.seq_len << " --nproc-per-node " << o.nproc << " --expert-parallel "
                << o.expert_parallel << " --rounds " << o.rounds << "\n"
                << format_scaling_bench(o, result);
      return;
    }
    apply_threads(f->threads);
    for (const auto& name : f->precisions) f->options.precisions.push_back(precision_from_string(name));
    for (const auto& name : f->fp32_gemms) f->options.fp32_gemms.push_back(cpu_fp32_gemm_from_string(name));
    if (f->precisions.empty() && f->options.device == "cpu") f->options.precisions = {Precision::kFp32, Precision::kBf16};
    ModelConfig config = load_model_config(f->config);
    if (f->json) {
      std::cout << train_bench_json(benchmark_training(config, f->options));
      return;
    }
    std::cout << describe(runtime_info()) << "\n"
              << "nextn bench train --config " << f->config << " --batch-size " << f->options.batch_size
              << " --seq-len " << f->options.seq_len << " --steps " << f->options.steps << " --precision ";
    for (size_t i = 0; i < f->options.precisions.size(); ++i) {
      std::cout << (i > 0 ? "," : "") << to_string(f->options.precisions[i]);
    }
    std::cout << "\n";
    std::cout << format_train_bench(benchmark_training(config, f->options), f->options.peak_tflops);
  });
}

NEXTN_REGISTER_COMMAND(90, setup_bench_train);

}  // namespace
}  // namespace nextn::cli
