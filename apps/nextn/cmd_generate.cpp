// `nextn generate`: text generation from a model directory, plain or with MTP speculative
// decoding, streaming tokens to the terminal; `nextn inspect`: what each MTP depth predicts at
// the end of a prompt next to plain decoding; `nextn export`: write a model directory anew, all or
// nothing (dtype, sharding, dropping the MTP modules; checkpoint/model_export.h).
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <iterator>

#include "command_registry.h"
#include "decoding_weights_flags.h"
#include "draft_head_flags.h"
#include "nextn/inference/decoding_panels.h"
#include "nextn/kernels/panel_matmul.h"
#include "nextn/inference/draft_tree.h"
#include "nextn/device/device.h"
#include "nextn/checkpoint/hf_checkpoint.h"
#include "nextn/checkpoint/model_export.h"
#include "nextn/inference/generator.h"
#include "nextn/inference/stop_strings.h"
#include "nextn/io/atomic_file.h"
#include "nextn/tokenizer/tokenizer.h"
#include "nextn/training/run_checkpoint.h"
#include "nextn/util/error.h"

namespace fs = std::filesystem;

namespace nextn::cli {
namespace {

using inference::GenerationOptions;
using inference::GenerationResult;

struct ModelFlags {
  std::string model_dir, tokenizer_path;
  std::string prompt, prompt_file;
  bool no_document_start = false;
  int threads = 0;
  std::string device = "cpu";
  bool no_verify = false;
  DecodingWeightsFlags decoding_weights;

  void add(CLI::App* cmd) {
    cmd->add_option("--model", model_dir, "model directory, or a run directory (its newest checkpoint)")->required();
    cmd->add_option("--tokenizer", tokenizer_path, "tokenizer.json (default: the model directory's)");
    CLI::Option* text = cmd->add_option("--prompt", prompt, "prompt text");
    // Given both, one would be dropped without a word.
    cmd->add_option("--prompt-file", prompt_file, "read the prompt from a file ('-': standard input)")->excludes(text);
    cmd->add_flag("--no-document-start", no_document_start,
                  "do not precede the prompt with EOS (training data separates documents with EOS, so "
                  "by default a prompt starts a new document)");
    add_threads_option(*cmd, threads);
    cmd->add_option("--device", device, "cpu or cuda[:N]");
    add_no_verify_option(*cmd, no_verify);
    decoding_weights.add(*cmd);
  }
};

struct LoadedModel {
  std::string dir;
  DeepSeekV3 model{nullptr};
  tokenizer::Tokenizer tok;
  // Decoding's weights in panels (--layout panels, as `nextn serve` decodes by default: the same
  // bits, the same tokens, with the same --precision); null with --layout rows.
  std::shared_ptr<inference::DecodingPanels> panels;
};

LoadedModel load(const ModelFlags& f) {
  std::string dir = resolve_model_dir(f.model_dir);
  std::string tokenizer_path = f.tokenizer_path.empty() ? (fs::path(dir) / "tokenizer.json").string() : f.tokenizer_path;
  NEXTN_CHECK(io::file_exists(tokenizer_path), "no tokenizer: '", tokenizer_path, "' does not exist (pass --tokenizer)");
  LoadedModel m{dir, load_model(dir, resolve_device(f.device), !f.no_verify), tokenizer::Tokenizer::load(tokenizer_path), nullptr};
  NEXTN_CHECK(m.tok.vocab_size() <= m.model->config().vocab_size, "tokenizer '", tokenizer_path, "' has ",
              m.tok.vocab_size(), " tokens, more than the model's vocab_size ", m.model->config().vocab_size);
  m.model->eval();
  m.panels = f.decoding_weights.pack(m.model);
  if (m.panels && !kernels::panel_matmul_vectorised()) {
    std::cerr << "decoding reads the model's rows: no vector path for panels on this CPU\n";
  }
  return m;
}

std::string read_prompt(const ModelFlags& f) {
  if (!f.prompt.empty()) return f.prompt;
  if (f.prompt_file.empty() || f.prompt_file == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  return io::read_file(f.prompt_file);
}

std::vector<int64_t> prompt_ids(const LoadedModel& m, const ModelFlags& f, const std::string& text) {
  std::vector<int64_t> ids;
  if (!f.no_document_start) ids.push_back(m.tok.eos_id());
  for (int32_t id : m.tok.encode(text)) ids.push_back(id);
  NEXTN_CHECK(!ids.empty(), "the prompt is empty");
  return ids;
}

// ---- generate -------------------------------------------------------------------------------

struct GenerateFlags {
  ModelFlags model;
  GenerationOptions options;
  bool greedy = false;
  std::string speculative;
  std::vector<std::string> stop_strings;
  std::vector<int64_t> stop_tokens;
  bool no_eos_stop = false;
  bool compare = false;
  bool print_token_ids = false;
  int64_t draft_vocab = 0;
  std::string draft_head = "model";
  CLI::Option* draft_option = nullptr;  // --draft, to tell "not given" from a given value
  std::string draft = "auto";            // --draft: N or "auto"
  CLI::Option* draft_tree_option = nullptr;  // --draft-tree: given empty is an error, not a chain
  std::string draft_tree;                    // --draft-tree: e.g. "2,2"
  std::vector<std::string> logit_bias;       // --logit-bias ID=BIAS, repeatable
};

// --logit-bias ID=BIAS (as the OpenAI API's logit_bias {"ID": BIAS}); ids checked against the model.
std::vector<std::pair<int64_t, double>> parse_logit_bias(const std::vector<std::string>& specs, int64_t vocab_size) {
  std::vector<std::pair<int64_t, double>> biases;
  for (const std::string& spec : specs) {
    const size_t at = spec.find('=');
    int64_t id = -1;
    double bias = 0;
    bool parsed = false;
    if (at != std::string::npos && at > 0) {
      try {
        size_t id_end = 0, bias_end = 0;
        id = std::stoll(spec.substr(0, at), &id_end);
        bias = std::stod(spec.substr(at + 1), &bias_end);
        parsed = id_end == at && bias_end == spec.size() - at - 1;
      } catch (const std::logic_error&) {  // std::invalid_argument, std::out_of_range
      }
    }
    NEXTN_CHECK(parsed, "--logit-bias takes TOKEN_ID=BIAS (e.g. 42=-100), got '", spec, "'");
    NEXTN_CHECK(id >= 0 && id < vocab_size, "--logit-bias: token id ", id, " is outside the vocabulary [0, ", vocab_size,
                ")");
    biases.emplace_back(id, bias);
  }
  return biases;
}

// Runs one generation, streaming its text to `out` (when not null); returns the result.
GenerationResult run_generation(const LoadedModel& m, const std::vector<int64_t>& prompt, const GenerationOptions& options,
                                const std::vector<std::string>& stop_strings, std::ostream* out) {
  tokenizer::StreamDecoder decoder(m.tok);
  inference::StopStringFilter filter(stop_strings);
  inference::Generator generator(m.model);
  GenerationResult result = generator.generate(prompt, options, [&](int64_t token) {
    bool stopped = false;
    std::string text = filter.push(decoder.push(static_cast<int32_t>(token)), stopped);
    if (out != nullptr) *out << text << std::flush;
    return !stopped;
  });
  bool stopped = false;
  std::string tail = filter.push(decoder.flush(), stopped);
  if (!stopped) tail += filter.flush();
  if (out != nullptr) *out << tail << std::endl;
  return result;
}

void print_stats(const std::string& label, const GenerationResult& r) {
  std::cerr << "--- " << label << ": " << r.stats.generated_tokens << " tokens, stopped by "
            << inference::to_string(r.stop_reason) << "\n"
            << r.stats.summary() << "\n";
}

void run_generate(GenerateFlags& f) {
  apply_threads(f.model.threads);
  LoadedModel m = load(f.model);
  GenerationOptions options = f.options;
  options.sampling.logit_bias = parse_logit_bias(f.logit_bias, m.model->config().vocab_size);
  options.sampling.validate();  // --temperature too, which --greedy overrides: a bad value is a typo
  if (f.greedy) options.sampling.temperature = 0.0;
  options.draft_head.dtype = inference::parse_draft_head_dtype(f.draft_head);
  if (!f.speculative.empty()) {
    NEXTN_CHECK(f.speculative == "mtp", "--speculative must be 'mtp' (the model's MTP modules draft), got '",
                f.speculative, "'");
    NEXTN_CHECK(!options.sampling.adjusts_logits(), "--presence-penalty, --frequency-penalty and --logit-bias need "
                "plain decoding (leave out --speculative): a speculative step verifies several tokens against one history");
    NEXTN_CHECK(m.model->config().mtp_depth() > 0, "--speculative mtp: the model in '", m.dir,
                "' has no MTP modules (num_nextn_predict_layers = 0)");
    // auto: the most the policy may choose is every MTP depth.
    const DraftCount draft = parse_draft_option(f.draft, m.model->config().mtp_depth());
    options.draft_tokens = draft.drafts;
    options.adaptive_draft = draft.adaptive;
    if (f.draft_tree_option->count() > 0) {
      NEXTN_CHECK(f.draft_option->count() == 0, "--draft-tree sets the depth itself: leave out --draft");
      options.draft_tree = inference::parse_draft_tree(f.draft_tree);
      options.draft_tokens = static_cast<int64_t>(options.draft_tree.size());
      options.adaptive_draft = false;
    }
    const DraftVocabulary vocabulary = draft_vocabulary_for(m.dir, f.draft_vocab, m.model->config().vocab_size, m.tok.hash());
    if (!vocabulary.token_ids.empty()) std::cerr << "draft vocabulary: " << vocabulary.description << "\n";
    options.draft_head.token_ids = vocabulary.token_ids;
  } else {
    NEXTN_CHECK(f.draft_option->count() == 0 && f.draft_tree_option->count() == 0 && !f.compare && f.draft_vocab == 0 &&
                    f.draft_head == "model",
                "--draft, --draft-tree, --draft-vocab, --draft-head and --compare need --speculative mtp");
  }
  options.stop_token_ids = f.stop_tokens;
  if (!f.no_eos_stop) options.stop_token_ids.push_back(m.tok.eos_id());
  std::vector<int64_t> prompt = prompt_ids(m, f.model, read_prompt(f.model));

  if (f.compare) {
    GenerationOptions plain = options;
    plain.draft_tokens = 0;
    plain.draft_tree.clear();
    GenerationResult baseline = run_generation(m, prompt, plain, f.stop_strings, nullptr);
    GenerationResult fast = run_generation(m, prompt, options, f.stop_strings, &std::cout);
    print_stats("plain decoding", baseline);
    print_stats(!options.draft_tree.empty() ? "MTP speculative decoding, tree " + inference::draft_tree_label(options.draft_tree)
                : options.adaptive_draft ? std::string("MTP speculative decoding, auto drafts")
                                         : "MTP speculative decoding, " + std::to_string(options.draft_tokens) + " drafts",
                fast);
    std::cerr << "speedup (decode tokens/s): " << std::fixed << std::setprecision(2)
              << fast.stats.decode_tokens_per_second() / baseline.stats.decode_tokens_per_second() << "x";
    if (options.sampling.greedy()) {
      std::cerr << "; outputs " << (fast.tokens == baseline.tokens ? "identical" : "DIFFER");
    }
    std::cerr << "\n";
    return;
  }
  GenerationResult result = run_generation(m, prompt, options, f.stop_strings, &std::cout);
  print_stats(options.draft_tokens > 0 ? "MTP speculative decoding" : "plain decoding", result);
  if (f.print_token_ids) {
    std::cerr << "token ids:";
    for (int64_t id : result.tokens) std::cerr << " " << id;
    std::cerr << "\n";
  }
}

void setup_generate(CLI::App& app) {
  auto f = std::make_shared<GenerateFlags>();
  auto* cmd = app.add_subcommand("generate", "Generate text, plain or with MTP speculative decoding");
  f->model.add(cmd);
  auto& o = f->options;
  cmd->add_option("--max-new-tokens", o.max_new_tokens, "tokens to generate at most");
  cmd->add_option("--temperature", o.sampling.temperature, "sampling temperature (0: greedy)");
  cmd->add_option("--top-k", o.sampling.top_k, "sample among the k most likely tokens (0: all)");
  cmd->add_option("--top-p", o.sampling.top_p, "sample within the smallest set of probability p (1: all)");
  cmd->add_option("--seed", o.sampling.seed, "sampling seed");
  cmd->add_option("--presence-penalty", o.sampling.presence_penalty, "subtracted once from the logit of each token "
                  "generated before (OpenAI's presence_penalty, -2..2)");
  cmd->add_option("--frequency-penalty", o.sampling.frequency_penalty, "subtracted from the logit of each token "
                  "generated before, once per time (OpenAI's frequency_penalty, -2..2)");
  cmd->add_option("--logit-bias", f->logit_bias, "TOKEN_ID=BIAS added to that token's logit at every step (-100..100; "
                  "repeatable; OpenAI's logit_bias)");
  cmd->add_flag("--greedy", f->greedy, "greedy decoding (same as --temperature 0)");
  cmd->add_option("--stop", f->stop_strings, "stop when this text is generated (repeatable)");
  cmd->add_option("--stop-token", f->stop_tokens, "stop after this token id (repeatable)");
  cmd->add_flag("--no-eos-stop", f->no_eos_stop, "do not stop at the end-of-document token");
  cmd->add_option("--speculative", f->speculative, "'mtp': the MTP modules draft, the main model verifies");
  f->draft_option = cmd->add_option("--draft", f->draft, "drafts per step, or 'auto' (the default with --speculative): "
                                    "each step drafts the number 0..D expected to give the most tokens per second");
  f->draft_tree_option = cmd->add_option("--draft-tree", f->draft_tree, "draft a tree instead of a chain: the candidates per node at each "
                  "depth, e.g. 2,2 (the 2 best at depth 1, for each the 2 best at depth 2); the main model verifies "
                  "all of them in one forward with tree attention, output unchanged");
  cmd->add_flag("--reuse-last-module", o.reuse_last_mtp_module, "allow --draft above the MTP depth D by running the "
                "last module again for the deeper drafts");
  cmd->add_option("--draft-vocab", f->draft_vocab, "draft from the K most frequent tokens only (the model "
                  "directory's draft_vocab.json, else token ids [0, K)): a cheaper drafter head, output unchanged "
                  "(0: all)");
  cmd->add_option("--draft-head", f->draft_head, "the drafter's head weights: 'model' (the output head's) or 'bf16' "
                  "(a bfloat16 copy, half the bytes read per draft; output unchanged)");
  cmd->add_flag("--compare", f->compare, "also run plain decoding and report the speedup");
  cmd->add_flag("--print-token-ids", f->print_token_ids, "print the generated token ids (standard error)");
  cmd->add_option("--context", o.context_length, "context length (default: max_position_embeddings)");
  cmd->add_flag("--truncate-prompt", o.truncate_long_prompt, "drop the oldest prompt tokens when the prompt does "
                "not fit (otherwise an error)");
  cmd->add_option("--prefill-chunk", o.prefill_chunk, "prompt tokens per forward (as serve's: the same value gives "
                  "the same tokens)")->check(positive());
  cmd->callback([f] { run_generate(*f); });
}

// ---- inspect --------------------------------------------------------------------------------

std::string shown(const tokenizer::Tokenizer& tok, int64_t id) {
  std::string text = tok.decode({static_cast<int32_t>(id)});
  std::string escaped;
  for (char c : text) {
    if (c == '\n') escaped += "\\n";
    else if (c == '\t') escaped += "\\t";
    else escaped += c;
  }
  return "'" + escaped + "'";
}

void run_inspect(const ModelFlags& f, int64_t top_k) {
  apply_threads(f.threads);
  LoadedModel m = load(f);
  const ModelConfig& c = m.model->config();
  NEXTN_CHECK(c.mtp_depth() > 0, "the model in '", m.dir, "' has no MTP modules to inspect");
  NEXTN_CHECK(top_k >= 1 && top_k <= c.vocab_size, "--top-k must be in [1, ", c.vocab_size,
              "] (the model's vocab_size), got ", top_k);
  std::vector<int64_t> prompt = prompt_ids(m, f, read_prompt(f));
  torch::NoGradGuard no_grad;
  // Plain step-by-step greedy decoding of D+1 tokens.
  std::vector<int64_t> ids = prompt;
  std::vector<torch::Tensor> plain_probs;
  for (int64_t step = 0; step <= c.mtp_depth(); ++step) {
    auto logits = m.model->forward(torch::tensor(ids).unsqueeze(0), ForwardOptions{false, false}).logits;
    plain_probs.push_back(torch::softmax(logits[0][-1].to(torch::kDouble), -1));
    ids.push_back(plain_probs.back().argmax().item<int64_t>());
  }
  // One forward over prompt + the first D greedy tokens: at the prompt's last position, depth k
  // predicts t_{T+k} having consumed the greedy tokens, exactly as a drafter would.
  std::vector<int64_t> context(ids.begin(), ids.end() - 1);
  ModelOutput out = m.model->forward(torch::tensor(context).unsqueeze(0), ForwardOptions{true, false});
  const int64_t last = static_cast<int64_t>(prompt.size()) - 1;
  std::cout << "prompt: " << prompt.size() << " tokens; MTP " << to_string(c.mtp_kind) << ", depth " << c.mtp_depth()
            << "\n";
  for (int64_t k = 0; k <= c.mtp_depth(); ++k) {
    auto probs = k == 0 ? plain_probs[0] : torch::softmax(out.mtp_logits[k - 1][0][last].to(torch::kDouble), -1);
    auto top = probs.topk(top_k);
    std::cout << "t+" << k + 1 << "  plain greedy " << std::setw(14) << shown(m.tok, ids[prompt.size() + k]) << " "
              << std::fixed << std::setprecision(3) << plain_probs[k].max().item<double>() << "  | "
              << (k == 0 ? "main model" : "MTP depth " + std::to_string(k)) << ":";
    for (int64_t j = 0; j < top_k; ++j) {
      std::cout << " " << shown(m.tok, std::get<1>(top)[j].item<int64_t>()) << " " << std::get<0>(top)[j].item<double>();
    }
    std::cout << "\n";
  }
}

void setup_inspect(CLI::App& app) {
  auto f = std::make_shared<ModelFlags>();
  auto top_k = std::make_shared<int64_t>(5);
  auto* cmd = app.add_subcommand("inspect", "Each MTP depth's top tokens at the end of a prompt, next to plain decoding");
  f->add(cmd);
  cmd->add_option("--top-k", *top_k, "tokens shown per depth");
  cmd->callback([f, top_k] { run_inspect(*f, *top_k); });
}

// ---- export ---------------------------------------------------------------------------------

void setup_export(CLI::App& app) {
  struct Flags {
    std::string model_dir, out_dir, dtype;
    bool drop_mtp = false, no_verify = false, allow_differences = false;
    uint64_t max_shard_bytes = 5ull << 30;
  };
  auto f = std::make_shared<Flags>();
  auto* cmd = app.add_subcommand("export", "Write a model directory anew: dtype, shard size, without MTP modules");
  cmd->add_option("--model", f->model_dir, "model directory, or a run directory (its newest checkpoint)")->required();
  cmd->add_option("--out", f->out_dir, "output directory")->required();
  cmd->add_flag("--drop-mtp", f->drop_mtp, "write the main model alone (DeepSeek-V3 4.3: the modules can be dropped)");
  cmd->add_option("--dtype", f->dtype, "float32, bfloat16 or float16 (default: the model's torch_dtype)");
  // Checked as text: CLI11 turns -5 into 2^64 - 5 for an unsigned option.
  cmd->add_option("--max-shard-bytes", f->max_shard_bytes, "shard the weights past this size")->check(positive());
  add_no_verify_option(*cmd, f->no_verify);
  cmd->add_flag("--allow-reference-differences", f->allow_differences,
                "export a model that Hugging Face's or DeepSeek's code would compute differently (nextn model info "
                "lists how)");
  cmd->callback([f] {
    const std::string dir = resolve_model_dir(f->model_dir);
    NEXTN_CHECK(fs::weakly_canonical(dir) != fs::weakly_canonical(f->out_dir), "--out must differ from the model directory");
    check_export_target(f->out_dir);  // before the work of loading
    DeepSeekV3 model = load_model(dir, torch::kCPU, !f->no_verify);
    std::string differences;
    for (const auto& difference : reference_code_differences(model->config())) differences += "; " + difference;
    NEXTN_CHECK(differences.empty() || f->allow_differences, "'", dir,
                "' is a model that other code reading the Hugging Face layout would compute differently", differences,
                " (--allow-reference-differences exports it anyway)");
    SaveModelOptions options;
    options.drop_mtp = f->drop_mtp;
    options.max_shard_bytes = f->max_shard_bytes;
    if (!f->dtype.empty()) options.dtype = dtype_from_name(f->dtype);
    const ExportResult result = export_model(*model, dir, f->out_dir, options);
    if (!result.has_tokenizer) std::cout << "note: '" << dir << "' has no tokenizer.json; the export has none either\n";
    std::cout << "wrote " << f->out_dir << (f->drop_mtp ? " (main model only)" : "") << "\n";
  });
}

NEXTN_REGISTER_COMMAND(60, setup_generate);
NEXTN_REGISTER_COMMAND(70, setup_inspect);
NEXTN_REGISTER_COMMAND(80, setup_export);

}  // namespace
}  // namespace nextn::cli
