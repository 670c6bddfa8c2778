// `nextn bench train`: training step time with and without MTP, with a breakdown.
#include <iostream>

#include "command_registry.h"
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
  };
  auto f = std::make_shared<Flags>();
  cmd->add_option("--config", f->config, "model config.json");
  cmd->add_option("--batch-size", f->options.batch_size, "sequences per step");
  cmd->add_option("--seq-len", f->options.seq_len, "tokens per sequence");
  cmd->add_option("--steps", f->options.steps, "timed steps per variant");
  cmd->add_option("--warmup", f->options.warmup, "untimed steps per variant");
  cmd->add_flag("--json", f->json, "one JSON object per variant and line, nothing else");
  add_threads_option(*cmd, f->threads);
  cmd->add_option("--device", f->options.device, "cpu (fp32) or cuda[:N] (bf16 autocast)");
  cmd->add_option("--peak-tflops", f->options.peak_tflops,
                  "the device's peak TFLOP/s for the step's precision, to report MFU (e.g. 989 for an H100 "
                  "SXM in bf16)")
      ->check(CLI::NonNegativeNumber);
  cmd->callback([f] {
    apply_threads(f->threads);
    ModelConfig config = load_model_config(f->config);
    if (f->json) {
      std::cout << train_bench_json(benchmark_training(config, f->options));
      return;
    }
    std::cout << describe(runtime_info()) << "\n"
              << "nextn bench train --config " << f->config << " --batch-size " << f->options.batch_size
              << " --seq-len " << f->options.seq_len << " --steps " << f->options.steps << "\n";
    std::cout << format_train_bench(benchmark_training(config, f->options), f->options.peak_tflops);
  });
}

NEXTN_REGISTER_COMMAND(90, setup_bench_train);

}  // namespace
}  // namespace nextn::cli
