// `nextn bench matmul`: decoding's 1-4-row products at a config's weight shapes, the few-rows
// kernel against BLAS (sgemv per row, sgemm).
#include <iostream>

#include "command_registry.h"
#include "nextn/bench/matmul_bench.h"
#include "nextn/util/runtime_info.h"

namespace nextn::cli {
namespace {

void setup_bench_matmul(CLI::App& app) {
  CLI::App& bench = command_group(app, "bench", "Benchmarks (figures for docs/BENCHMARKS.md)");
  auto* cmd = bench.add_subcommand(
      "matmul", "Decoding's products for 1-4 rows: the few-rows kernel against one sgemv per row and sgemm");
  struct Flags {
    std::string config = "configs/small.json";
    MatmulBenchOptions options;
    bool json = false;
    int threads = 0;
  };
  auto f = std::make_shared<Flags>();
  cmd->add_option("--config", f->config, "model config.json whose weight shapes are measured");
  cmd->add_option("--max-rows", f->options.max_rows, "rows 1..this");
  cmd->add_option("--calls", f->options.calls, "timed calls per shape, row count and method");
  cmd->add_flag("--json", f->json, "one JSON object per shape and row count, one per line");
  add_threads_option(*cmd, f->threads);
  cmd->callback([f] {
    apply_threads(f->threads);
    auto results = benchmark_matmul(load_model_config(f->config), f->options);
    if (f->json) {
      std::cout << matmul_bench_json(results);
      return;
    }
    std::cout << describe(runtime_info()) << "\n"
              << "nextn bench matmul --config " << f->config << " (float32, median of " << f->options.calls
              << " calls each, in alternating blocks)\n"
              << format_matmul_bench(results);
  });
}

NEXTN_REGISTER_COMMAND(93, setup_bench_matmul);

}  // namespace
}  // namespace nextn::cli
