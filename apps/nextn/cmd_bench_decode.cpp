// `nextn bench decode`: plain against MTP speculative decoding (N = 1..3), side by side.
#include <algorithm>
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "command_registry.h"
#include "decoding_weights_flags.h"
#include "draft_head_flags.h"
#include "nextn/device/device.h"
#include "nextn/bench/batch_decode_bench.h"
#include "nextn/bench/decode_bench.h"
#include "nextn/bench/repeating_model.h"
#include "nextn/checkpoint/hf_checkpoint.h"
#include "nextn/inference/decoding_panels.h"
#include "nextn/inference/draft_tree.h"
#include "nextn/io/atomic_file.h"
#include "nextn/tokenizer/tokenizer.h"
#include "nextn/training/run_checkpoint.h"
#include "nextn/util/error.h"
#include "nextn/util/runtime_info.h"

namespace fs = std::filesystem;

namespace nextn::cli {
namespace {

// The start of a Python function: what the demo's model was trained on.
constexpr const char* kDefaultPrompt =
    "import os\nimport sys\n\n\ndef main(argv):\n    \"\"\"Print every file name given on the command line.\"\"\"\n"
    "    for name in argv[1:]:\n";

struct Flags {
  std::string model_dir, config = "configs/small.json", prompt = kDefaultPrompt;
  int64_t prompt_tokens = 32;
  uint64_t init_seed = 0;
  bool json = false;
  bool repeating = false;
  bool profile = false;
  int threads = 0;
  std::string device = "cpu";
  int64_t draft_vocab = 0;
  std::string draft_head = "model";
  bool no_verify = false;
  std::vector<int64_t> batch_sizes;
  std::vector<std::string> draft_trees;
  std::vector<std::string> layouts = {"panels"};
  std::vector<std::string> precisions = {"auto"};  // of the panels
  DecodeBenchOptions options;
};

// --batch: plain decoding of B sequences per batched step (the server's), at each B given.
void run_batched(DeepSeekV3 model, const std::vector<int64_t>& prompt, const Flags& f, const std::string& source) {
  if (f.profile) {
    std::cout << "operators per batched decoding step (outermost ones; the rest of a step is overhead between them)\n";
    for (int64_t b : f.batch_sizes) std::cout << "\n" << profile_batched_decoding(model, prompt, b, f.options.new_tokens, 25);
    return;
  }
  BatchDecodeBenchOptions options;
  options.batch_sizes = f.batch_sizes;
  options.new_tokens = f.options.new_tokens;
  options.repeats = f.options.repeats;
  auto results = benchmark_batched_decoding(model, prompt, options);
  if (f.json) {
    std::cout << batch_decode_bench_json(results);
    return;
  }
  std::cout << describe(runtime_info()) << "\n"
            << "nextn bench decode --batch: " << source << "\n"
            << "plain greedy decoding, B sequences per batched step (the server's continuous batching), prompt "
            << prompt.size() + 1 << " tokens each, " << options.new_tokens << " new tokens per sequence, median of "
            << options.repeats << " runs per batch size\n"
            << format_batch_decode_bench(results);
}

void run_layout(DeepSeekV3 model, const std::vector<int64_t>& prompt, const Flags& f, const std::string& source,
                const DraftVocabulary& vocabulary);

void run(Flags f) {
  apply_threads(f.threads);
  const torch::Device device = resolve_device(f.device);
  DeepSeekV3 model{nullptr};
  std::vector<int64_t> prompt;
  std::string source, dir, tokenizer_hash;
  NEXTN_CHECK(!f.repeating || f.model_dir.empty(), "bench decode: --repeating makes random weights repeat; it takes "
              "--config, not --model");
  if (!f.model_dir.empty()) {
    dir = resolve_model_dir(f.model_dir);
    model = load_model(dir, torch::kCPU, !f.no_verify);
    const std::string tokenizer_path = (fs::path(dir) / "tokenizer.json").string();
    NEXTN_CHECK(io::file_exists(tokenizer_path), "bench decode: no tokenizer.json in '", dir, "'");
    auto tok = tokenizer::Tokenizer::load(tokenizer_path);
    tokenizer_hash = tok.hash();
    prompt.push_back(tok.eos_id());  // a prompt starts a document, as in `nextn generate`
    for (int32_t id : tok.encode(f.prompt)) prompt.push_back(id);
    source = "model " + dir;
  } else {
    torch::manual_seed(f.init_seed);
    model = DeepSeekV3(load_model_config(f.config));
    auto ids = torch::randint(model->config().vocab_size, {f.prompt_tokens}, torch::kLong);
    prompt.assign(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + f.prompt_tokens);
    source = "config " + f.config + " with random weights (acceptance is meaningless; pass --model for a trained one)";
    if (f.repeating) {
      make_model_repeat(model);
      source = "config " + f.config + " with random weights made to repeat the last token (every draft is accepted)";
    }
  }
  model->to(device);
  model->eval();
  const DraftVocabulary vocabulary = draft_vocabulary_for(dir, f.draft_vocab, model->config().vocab_size, tokenizer_hash);
  f.options.draft_vocabulary = vocabulary.token_ids;
  f.options.draft_vocabulary_source = vocabulary.description;
  f.options.bf16_draft_head = inference::parse_draft_head_dtype(f.draft_head) == inference::DraftHeadDtype::kBFloat16;
  for (const auto& tree : f.draft_trees) f.options.trees.push_back(inference::parse_draft_tree(tree));
  // The variants: the model's own rows once, the panels in each precision (a precision is the
  // panels'; asked of rows alone it would be dropped without a word).
  for (const std::string& precision : f.precisions) inference::parse_decoding_precision(precision);
  const bool any_panels = std::count(f.layouts.begin(), f.layouts.end(), "panels") > 0;
  const bool asks_bf16 = std::count(f.precisions.begin(), f.precisions.end(), "bf16") > 0;
  NEXTN_CHECK(any_panels || !asks_bf16, "bench decode: --precision bf16 packs panels; --layout rows reads the "
              "model's own float32 rows (add --layout panels)");
  std::vector<DecodingWeightsFlags> variants;
  for (const std::string& layout : f.layouts) {
    NEXTN_CHECK(layout == "panels" || layout == "rows", "bench decode: --layout '", layout,
                "': expected panels or rows");
    if (layout == "rows") {
      variants.push_back({"rows", "fp32"});
      continue;
    }
    for (const std::string& precision : f.precisions) variants.push_back({"panels", precision});
  }
  for (size_t i = 0; i < variants.size(); ++i) {
    // Decoding's weights packed in panels (inference/decoding_panels.h), as generate and serve
    // run, or the model's own rows (the row kernel: less memory). With several variants, a line
    // naming them precedes each one's rows (under --json a JSON object of its own).
    const std::unique_ptr<inference::DecodingPanels> panels = variants[i].pack(model);
    if (f.json && variants.size() > 1) {
      std::cout << nlohmann::json{{"decoding_weights", {{"layout", variants[i].layout},
                                                        {"precision", variants[i].precision},
                                                        {"description", describe_decoding_weights(panels.get())}}}}
                       .dump()
                << "\n";
    } else if (variants.size() > 1) {
      std::cout << (i > 0 ? "\n" : "") << "weights for decoding: " << describe_decoding_weights(panels.get()) << "\n";
    }
    run_layout(model, prompt, f, source, vocabulary);
  }
}

void run_layout(DeepSeekV3 model, const std::vector<int64_t>& prompt, const Flags& f, const std::string& source,
                const DraftVocabulary& vocabulary) {
  if (!f.batch_sizes.empty()) {
    run_batched(model, prompt, f, source);
    return;
  }
  if (f.profile) {
    std::cout << "operators per decoding step (outermost ones; the rest of a step is overhead between them)\n";
    std::cout << "\n" << profile_decoding(model, prompt, f.options, 0, {}, 25);
    for (const auto& head : f.options.draft_heads()) {
      for (int64_t n = 1; n <= f.options.max_draft && model->config().mtp_depth() > 0; ++n) {
        if (n > model->config().mtp_depth() && !f.options.reuse_last_module) break;
        std::cout << "\n" << profile_decoding(model, prompt, f.options, n, head, 25);
      }
    }
    return;
  }
  auto results = benchmark_decoding(model, prompt, f.options);
  if (f.json) {
    std::cout << decode_bench_json(results);
    return;
  }
  std::cout << describe(runtime_info()) << "\n"
            << "nextn bench decode: " << source << "\n"
            << "batch 1, prompt " << prompt.size() << " tokens, " << f.options.new_tokens << " new tokens, "
            << (f.options.temperature > 0 ? "temperature " + std::to_string(f.options.temperature) : "greedy")
            << ", median of " << f.options.repeats << " runs per variant\n"
            << (vocabulary.token_ids.empty() ? "" : "V=" + std::to_string(vocabulary.token_ids.size()) + ": drafts from " +
                                                        vocabulary.description + "\n")
            << format_decode_bench(results);
}

void setup_bench_decode(CLI::App& app) {
  CLI::App& bench = command_group(app, "bench", "Benchmarks (figures for docs/BENCHMARKS.md)");
  auto* cmd = bench.add_subcommand("decode", "Plain against MTP speculative decoding: tokens/s, acceptance, efficiency");
  auto f = std::make_shared<Flags>();
  cmd->add_option("--model", f->model_dir, "model or run directory (default: --config with random weights)");
  add_no_verify_option(*cmd, f->no_verify);
  cmd->add_option("--config", f->config, "model config.json when no --model is given");
  cmd->add_option("--prompt", f->prompt, "prompt text (with --model; default: the start of a Python function)");
  cmd->add_flag("--repeating", f->repeating, "with --config: weights made to repeat the last token, which every MTP "
                "depth drafts (each block's output projections zero, the head the embedding): speculation's best case");
  cmd->add_option("--prompt-tokens", f->prompt_tokens, "random prompt length (without --model)");
  cmd->add_option("--new-tokens", f->options.new_tokens, "tokens generated per run");
  cmd->add_option("--max-draft", f->options.max_draft, "speculative variants N = 1..this");
  cmd->add_option("--repeats", f->options.repeats, "runs per variant (medians reported)");
  cmd->add_option("--temperature", f->options.temperature, "0: greedy (outputs checked identical to plain)");
  cmd->add_option("--seed", f->options.seed, "sampling seed");
  cmd->add_option("--draft-vocab", f->draft_vocab, "also draft from the K most frequent tokens only (the model "
                  "directory's draft_vocab.json, else token ids [0, K); 0: not)");
  cmd->add_option("--draft-tree", f->draft_trees, "also draft trees of this shape, e.g. 2,2 (candidates per node at "
                  "each depth; repeatable)");
  cmd->add_option("--draft-head", f->draft_head, "'bf16': also draft from a bfloat16 copy of the head ('model': not)");
  cmd->add_flag("--json", f->json, "one JSON object per variant and line");
  cmd->add_flag("--profile", f->profile, "instead: the operators of a decoding step, with counts and times");
  cmd->add_option("--layout", f->layouts, "the weights decoding reads: 'panels' (packed copies, as generate and "
                  "serve use) or 'rows' (the model's own); repeatable, each measured in turn")
      ->delimiter(',');
  cmd->add_option("--precision", f->precisions, "the panels' precision: auto, fp32 or bf16 (as generate's); "
                  "repeatable, each measured in turn")
      ->delimiter(',')
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
  cmd->add_option("--batch", f->batch_sizes, "instead: plain decoding of B sequences per batched step (the "
                  "server's continuous batching), for each B given (repeatable; batch 1 is always measured)");
  add_threads_option(*cmd, f->threads);
  cmd->add_option("--device", f->device, "cpu or cuda[:N]");
  cmd->callback([f] { run(*f); });
}

NEXTN_REGISTER_COMMAND(91, setup_bench_decode);

}  // namespace
}  // namespace nextn::cli
