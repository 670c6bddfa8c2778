// `nextn bench matmul`: decoding's 1-4-row products at a config's weight shapes, the few-rows
// kernel against BLAS (sgemv per row, sgemm).
#include <iostream>

#include "command_registry.h"
#include "nextn/bench/matmul_bench.h"
#include "nextn/kernels/few_rows_matmul.h"
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
    std::string weights = "cold";
    std::string path = "auto";
  };
  auto f = std::make_shared<Flags>();
  cmd->add_option("--config", f->config, "model config.json whose weight shapes are measured");
  cmd->add_option("--max-rows", f->options.max_rows, "rows 1..this");
  cmd->add_option("--calls", f->options.calls, "timed calls per shape, row count and method");
  cmd->add_option("--weights", f->weights,
                  "cold: each call reads another copy of the weight from memory, as in decoding; warm: one "
                  "cache-resident copy")
      ->check(CLI::IsMember({"cold", "warm"}));
  cmd->add_option("--path", f->path, "the kernel's code path: auto (the widest this CPU has), avx512, avx2, portable")
      ->check(CLI::IsMember({"auto", "avx512", "avx2", "portable"}));
  cmd->add_flag("--json", f->json, "one JSON object per shape and row count, one per line");
  add_threads_option(*cmd, f->threads);
  cmd->callback([f] {
    apply_threads(f->threads);
    if (f->path != "auto") {
      kernels::force_few_rows_matmul_path(f->path == "avx512" ? kernels::FewRowsPath::kAvx512
                                          : f->path == "avx2" ? kernels::FewRowsPath::kAvx2Fma
                                                              : kernels::FewRowsPath::kPortable);
    }
    f->options.cold_weights = f->weights == "cold";
    auto results = benchmark_matmul(load_model_config(f->config), f->options);
    if (f->json) {
      std::cout << matmul_bench_json(results);
      return;
    }
    std::cout << describe(runtime_info()) << "\n"
              << "nextn bench matmul --config " << f->config << " (float32, median of " << f->options.calls
              << " calls each, in alternating blocks; " << f->weights << " weights; kernel path "
              << kernels::few_rows_matmul_path_name(kernels::few_rows_matmul_path()) << ")\n"
              << format_matmul_bench(results);
  });
}

NEXTN_REGISTER_COMMAND(93, setup_bench_matmul);

}  // namespace
}  // namespace nextn::cli
