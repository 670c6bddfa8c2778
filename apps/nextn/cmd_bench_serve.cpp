// `nextn bench serve`: aggregate tokens/s and time to first token of `nextn serve` under 1..16
// concurrent greedy streams, plain and with MTP drafting.
#include <filesystem>
#include <iostream>

#include "command_registry.h"
#include "nextn/bench/serve_bench.h"
#include "nextn/training/run_checkpoint.h"
#include "nextn/util/runtime_info.h"

namespace nextn::cli {
namespace {

void setup_bench_serve(CLI::App& app) {
  CLI::App& bench = command_group(app, "bench", "Benchmarks (figures for docs/BENCHMARKS.md)");
  auto* cmd = bench.add_subcommand("serve", "Serving throughput and time to first token at 1..16 concurrent streams");
  auto o = std::make_shared<ServeBenchOptions>();
  auto json = std::make_shared<bool>(false);
  cmd->add_option("--model", o->model, "model or run directory to serve");
  cmd->add_option("--url", o->url, "measure an already running server instead (http://host:port)");
  cmd->add_option("--streams", o->concurrency, "concurrent streams to measure (repeatable)");
  cmd->add_option("--max-tokens", o->max_tokens, "tokens per request");
  cmd->add_option("--requests", o->requests_per_client, "requests per stream");
  cmd->add_option("--drafts", o->draft_variants, "server variants: 0 plain, N MTP drafts, auto (repeatable)");
  cmd->add_option("--max-batch", o->max_batch, "the started servers' --max-batch");
  cmd->add_option("--precision", o->precision, "the started servers' --precision: auto, fp32 or bf16")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
  cmd->add_option("--prompt-tokens", o->prompt_tokens, "prompts of this many random token ids (0: short texts)")
      ->check(non_negative());
  cmd->add_option("--shared-prefix", o->shared_prefix, "of the --prompt-tokens, the first this many the same in "
                  "every request (a system prompt)")->check(non_negative());
  cmd->add_option("--prefix-cache-mb", o->prefix_cache_mib, "the started servers' --prefix-cache-mb, one server per "
                  "value (repeatable; default: the servers' own, 0 with the short text prompts, which repeat)")->check(non_negative());
  cmd->add_option("--prefill-chunk", o->prefill_chunks, "the started servers' --prefill-chunk, one server per value "
                  "(repeatable; default: the servers' own)")->check(positive());
  cmd->add_option("--rounds", o->rounds, "sweeps over the streams per server (medians, and ratios to the same "
                  "round's 1 stream)")->check(positive());
  cmd->add_flag("--json", *json, "one JSON object per row");
  cmd->callback([o, json] {
    NEXTN_CHECK(!o->model.empty() || !o->url.empty(), "bench serve needs --model (a server to start) or --url");
    if (!o->model.empty()) o->model = resolve_model_dir(o->model);
    o->binary = std::filesystem::read_symlink("/proc/self/exe").string();
    auto rows = benchmark_serving(*o);
    if (*json) {
      std::cout << serve_bench_json(rows);
      return;
    }
    std::cout << describe(runtime_info()) << "\n"
              << "nextn bench serve "
              << (o->url.empty() ? "--model " + o->model + " --max-batch " + std::to_string(o->max_batch) +
                                       " --precision " + o->precision
                                 : "--url " + o->url)
              << " --max-tokens " << o->max_tokens << " --requests " << o->requests_per_client << " --rounds " << o->rounds
              << (o->prompt_tokens > 0 ? " --prompt-tokens " + std::to_string(o->prompt_tokens) : std::string())
              << (o->shared_prefix > 0 ? " --shared-prefix " + std::to_string(o->shared_prefix) : std::string())
              << (o->prompt_tokens == 0 && o->prefix_cache_mib.empty() ? " --prefix-cache-mb 0 (the short prompts repeat)"
                                                                        : std::string())
              << " (greedy, ignore_eos; medians over rounds, 'vs 1': the median of each round's ratio; ITL: the gaps "
                 "between a request's tokens)\n"
              << format_serve_bench(rows);
  });
}

NEXTN_REGISTER_COMMAND(92, setup_bench_serve);

}  // namespace
}  // namespace nextn::cli
