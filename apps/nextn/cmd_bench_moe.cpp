// `nextn bench moe`: one MoE layer's time at 16, 32, 64 routed experts (same tokens, K, expert size).
#include <iostream>

#include "command_registry.h"
#include "nextn/bench/moe_bench.h"
#include "nextn/util/runtime_info.h"

namespace nextn::cli {
namespace {

void setup_bench_moe(CLI::App& app) {
  CLI::App& bench = command_group(app, "bench", "Benchmarks (figures for docs/BENCHMARKS.md)");
  auto* cmd = bench.add_subcommand(
      "moe", "One MoE layer's forward+backward time against the number of routed experts (fixed tokens and top-K)");
  struct Flags {
    std::string config = "configs/small.json";
    MoeBenchOptions options;
    bool json = false;
    int threads = 0;
    std::string precision = "fp32";
  };
  auto f = std::make_shared<Flags>();
  cmd->add_option("--config", f->config, "model config.json: hidden size, expert size, top-K, groups");
  cmd->add_option("--tokens", f->options.tokens, "tokens through the layer per step");
  cmd->add_option("--experts", f->options.experts, "routed expert counts to compare")->delimiter(',');
  cmd->add_option("--steps", f->options.steps, "timed steps per size");
  cmd->add_option("--warmup", f->options.warmup, "untimed steps per size");
  cmd->add_option("--precision", f->precision, "fp32, or bf16 (the forward under bf16 autocast, as `train --precision bf16`)");
  cmd->add_flag("--json", f->json, "one JSON object per size and line");
  add_threads_option(*cmd, f->threads);
  cmd->callback([f] {
    apply_threads(f->threads);
    f->options.precision = precision_from_string(f->precision);
    ModelConfig config = load_model_config(f->config);
    auto results = benchmark_moe(config, f->options);
    if (f->json) {
      std::cout << moe_bench_json(results);
      return;
    }
    std::cout << describe(runtime_info()) << "\n"
              << "nextn bench moe --config " << f->config << " --tokens " << f->options.tokens << " (top-"
              << config.num_experts_per_tok << ", expert size " << config.moe_intermediate_size << ")\n"
              << format_moe_bench(results);
  });
}

NEXTN_REGISTER_COMMAND(92, setup_bench_moe);

}  // namespace
}  // namespace nextn::cli
