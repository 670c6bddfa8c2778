// `nextn tokenizer train | encode | decode | info`: byte-level BPE tokenizers in the Hugging Face
// tokenizer.json format.
#include <iostream>
#include <iterator>
#include <sstream>
#include <thread>

#include "command_registry.h"
#include "corpus_options.h"
#include "nextn/data/tokenizer_training.h"
#include "nextn/io/atomic_file.h"
#include "nextn/tokenizer/tokenizer.h"
#include "nextn/tokenizer/tokenizer_json.h"
#include "nextn/tokenizer/unicode.h"

#include <nlohmann/json.hpp>
#include "nextn/util/error.h"
#include "nextn/util/runtime_info.h"

namespace nextn::cli {
namespace {

int resolve_threads(int threads) { return resolve_thread_count(threads); }

struct TokenizerTrainFlags {
  CorpusFlags corpus;
  int32_t vocab_size = 8192;
  int64_t min_frequency = 2;
  std::string pre_tokenizer = "deepseek-v3";
  std::string output;
  int threads = 0;
};

void run_tokenizer_train(const TokenizerTrainFlags& flags) {
  data::TokenizerTrainingOptions options;
  options.bpe.vocab_size = flags.vocab_size;
  options.bpe.min_frequency = flags.min_frequency;
  options.bpe.pre_tokenizer = tokenizer::pre_tokenizer_by_name(flags.pre_tokenizer);
  options.threads = resolve_threads(flags.threads);
  data::CorpusOptions corpus = corpus_options_from(flags.corpus);
  std::cerr << "training a " << flags.vocab_size << "-token tokenizer (" << flags.pre_tokenizer
            << ") on " << corpus.inputs.front() << (corpus.inputs.size() > 1 ? " ..." : "") << "\n";
  data::TokenizerTrainingReport report;
  tokenizer::Tokenizer trained =
      data::train_tokenizer(corpus, options, report, [](const std::string& line) { std::cerr << line << "\n"; });
  trained.save(flags.output);
  std::cout << "wrote " << flags.output << ": vocabulary " << trained.vocab_size() << " ("
            << trained.num_merges() << " merges), " << report.corpus.describe() << "; counting "
            << report.count_seconds << " s, merging " << report.merge_seconds << " s\n"
            << "hash " << trained.hash() << "\n";
  if (trained.vocab_size() < flags.vocab_size) {
    std::cout << "note: the corpus ran out of pairs seen " << flags.min_frequency
              << " times; the vocabulary is smaller than asked\n";
  }
}

std::string read_text_argument(const std::string& text, const std::string& file) {
  NEXTN_CHECK(text.empty() != file.empty(), "give exactly one of --text and --file");
  if (!file.empty()) return file == "-" ? std::string(std::istreambuf_iterator<char>(std::cin), {}) : io::read_file(file);
  return text;
}

// JSON lines: one JSON value per input line in, one per output line out (for batches of texts
// from programs, such as the conformance test against Hugging Face tokenizers).
template <typename PerLine>
void for_each_json_line(const std::string& path, PerLine per_line) {
  std::string content = path == "-" ? std::string(std::istreambuf_iterator<char>(std::cin), {}) : io::read_file(path);
  std::istringstream lines(content);
  std::string line;
  std::size_t number = 0;
  while (std::getline(lines, line)) {
    ++number;
    if (line.empty()) continue;
    nlohmann::json value;
    try {
      value = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail(path, ":", number, ": not valid JSON (", e.what(), ")");
    }
    std::cout << per_line(value, number).dump() << "\n";
  }
}

void run_encode_jsonl(const tokenizer::Tokenizer& tok, const std::string& path, bool ordinary, bool add_special) {
  for_each_json_line(path, [&](const nlohmann::json& value, std::size_t number) {
    NEXTN_CHECK(value.is_string(), path, ":", number, ": expected a JSON string");
    const std::string text = value.get<std::string>();
    return nlohmann::json(ordinary ? tok.encode_ordinary(text) : tok.encode(text, add_special));
  });
}

void run_decode_jsonl(const tokenizer::Tokenizer& tok, const std::string& path, bool skip_special) {
  for_each_json_line(path, [&](const nlohmann::json& value, std::size_t number) {
    NEXTN_CHECK(value.is_array(), path, ":", number, ": expected a JSON array of ids");
    std::vector<int32_t> ids;
    for (const nlohmann::json& id : value) {
      NEXTN_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() <= INT32_MAX, path, ":",
                  number, ": '", id.dump(), "' is not a token id");
      ids.push_back(id.get<int32_t>());
    }
    // JSON strings are Unicode: invalid UTF-8 becomes U+FFFD, as in Hugging Face's decode.
    return nlohmann::json(tokenizer::to_valid_utf8_lossy(tok.decode(ids, skip_special)));
  });
}

void run_encode(const std::string& tokenizer_path, const std::string& text, const std::string& file,
                bool ordinary, bool show_tokens, bool add_special, const std::string& jsonl) {
  tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(tokenizer_path);
  if (!jsonl.empty()) {
    NEXTN_CHECK(text.empty() && file.empty() && !show_tokens, "--jsonl takes no --text, --file or --show-tokens");
    run_encode_jsonl(tok, jsonl, ordinary, add_special);
    return;
  }
  std::string input = read_text_argument(text, file);
  std::vector<int32_t> ids = ordinary ? tok.encode_ordinary(input) : tok.encode(input, add_special);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) std::cout << (show_tokens ? "\n" : " ");
    std::cout << ids[i];
    if (show_tokens) std::cout << "\t" << tok.id_to_token(ids[i]).value_or("?");
  }
  std::cout << "\n";
}

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::string normalized = text;
  for (char& c : normalized) {
    if (c == ',' || c == '[' || c == ']') c = ' ';
  }
  std::istringstream in(normalized);
  std::string word;
  while (in >> word) {
    std::size_t used = 0;
    long long value = 0;
    try {
      value = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    NEXTN_CHECK(used == word.size() && value >= 0 && value <= INT32_MAX, "'", word, "' is not a token id");
    ids.push_back(int32_t(value));
  }
  return ids;
}

void run_decode(const std::string& tokenizer_path, const std::string& ids_text, const std::string& file,
                bool skip_special, const std::string& jsonl) {
  tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(tokenizer_path);
  if (!jsonl.empty()) {
    NEXTN_CHECK(ids_text.empty() && file.empty(), "--jsonl takes no --ids or --file");
    run_decode_jsonl(tok, jsonl, skip_special);
    return;
  }
  std::string text = read_text_argument(ids_text, file);
  std::string bytes = tok.decode(parse_ids(text), skip_special);
  std::cout.write(bytes.data(), std::streamsize(bytes.size()));
  std::cout.flush();
}

// "Split, Split, ByteLevel" from a component's step kinds.
template <typename Spec>
std::string component_summary(const Spec& spec) {
  if (!spec.present) return "none";
  std::string out;
  for (const auto& step : spec.steps) out += (out.empty() ? "" : ", ") + tokenizer::step_type_name(step);
  return out.empty() ? "empty" : out;
}

void run_info(const std::string& tokenizer_path) {
  tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(tokenizer_path);
  auto id_or_none = [](std::optional<int32_t> id) { return id ? std::to_string(*id) : std::string("none"); };
  std::cout << "tokenizer: " << tokenizer_path << "\n"
            << "vocabulary: " << tok.vocab_size() << " ids, " << tok.num_merges() << " merges, "
            << tok.spec().added_tokens.size() << " added tokens\n"
            << "normalizer: " << component_summary(tok.spec().normalizer) << "\n"
            << "pre-tokenizer: " << tokenizer::pre_tokenizer_name(tok.spec().pre_tokenizer) << ", "
            << component_summary(tok.spec().pre_tokenizer)
            << (tok.pre_tokenizer().all_regexes_jit_compiled() ? " (PCRE2 JIT)" : " (PCRE2 interpreter)") << "\n"
            << "model: BPE" << (tok.spec().byte_fallback ? ", byte_fallback" : "")
            << (tok.spec().ignore_merges ? ", ignore_merges" : "")
            << (tok.spec().unk_token ? ", unk " + *tok.spec().unk_token : std::string()) << "\n"
            << "post-processor: " << component_summary(tok.spec().post_processor) << "\n"
            << "decoder: " << component_summary(tok.spec().decoder) << "\n"
            << "tokenizer_config.json: "
            << (tok.config().present ? (tok.config().chat_template ? "read (has a chat template)" : "read") : "none") << "\n"
            << "bos " << id_or_none(tok.find_bos_id()) << ", eos " << id_or_none(tok.find_eos_id())
            << ", pad " << (tok.find_eos_id() ? std::to_string(tok.pad_id()) : std::string("none")) << "\n"
            << "hash: " << tok.hash() << "\n";
  std::vector<std::string> differences = tok.hugging_face_id_differences();
  if (!differences.empty()) {
    std::cout << "warning: Hugging Face tokenizers numbers " << differences.size()
              << " added token(s) differently (it ignores the ids of added_tokens and gives a token the id the model "
                 "vocabulary has for it, else the next free one); list each in model.vocab with its id:\n";
    for (std::size_t i = 0; i < differences.size() && i < 5; ++i) std::cout << "  " << differences[i] << "\n";
  }
}

void setup_tokenizer(CLI::App& app) {
  auto* group = app.add_subcommand("tokenizer", "Train and use BPE tokenizers (Hugging Face tokenizer.json)");
  group->require_subcommand(1);

  auto train_flags = std::make_shared<TokenizerTrainFlags>();
  auto* train = group->add_subcommand("train", "Learn a BPE vocabulary from a corpus");
  add_corpus_options(*train, train_flags->corpus);
  train->add_option("--vocab-size", train_flags->vocab_size, "Vocabulary size, special tokens included")
      ->capture_default_str()->check(CLI::Range(262, 1 << 24));
  train->add_option("--min-frequency", train_flags->min_frequency, "Never merge pairs seen fewer times")
      ->capture_default_str()->check(positive());
  train->add_option("--pre-tokenizer", train_flags->pre_tokenizer, "deepseek-v3, gpt2 or simple")
      ->capture_default_str();
  train->add_option("--output,-o", train_flags->output, "Where to write tokenizer.json")->required();
  train->add_option("--threads", train_flags->threads, "Worker threads (0 = all cores)")->capture_default_str();
  train->callback([train_flags] { run_tokenizer_train(*train_flags); });

  struct CodecFlags {
    std::string tokenizer, text, file, jsonl;
    bool ordinary = false, show_tokens = false, add_special = false, skip_special = false;
  };
  auto codec = std::make_shared<CodecFlags>();
  auto* encode = group->add_subcommand("encode", "Print the token ids of a text");
  encode->add_option("--tokenizer,-t", codec->tokenizer, "tokenizer.json")->required();
  encode->add_option("--text", codec->text, "The text");
  encode->add_option("--file", codec->file, "Read the text from a file ('-' = stdin)");
  encode->add_flag("--ordinary", codec->ordinary, "Treat special-token spellings as ordinary text");
  encode->add_flag("--show-tokens", codec->show_tokens, "One id per line with its token");
  encode->add_flag("--add-special-tokens", codec->add_special, "Add what the post-processor adds (BOS/EOS)");
  encode->add_option("--jsonl", codec->jsonl, "Encode each line of this file (a JSON string); print a JSON array per line");
  encode->callback([codec] {
    run_encode(codec->tokenizer, codec->text, codec->file, codec->ordinary, codec->show_tokens, codec->add_special, codec->jsonl);
  });

  auto* decode = group->add_subcommand("decode", "Write the bytes of token ids to stdout");
  decode->add_option("--tokenizer,-t", codec->tokenizer, "tokenizer.json")->required();
  decode->add_option("--ids", codec->text, "Ids separated by spaces or commas");
  decode->add_option("--file", codec->file, "Read the ids from a file ('-' = stdin)");
  decode->add_flag("--skip-special-tokens", codec->skip_special, "Leave out special added tokens");
  decode->add_option("--jsonl", codec->jsonl, "Decode each line of this file (a JSON array of ids); print a JSON string per line");
  decode->callback([codec] { run_decode(codec->tokenizer, codec->text, codec->file, codec->skip_special, codec->jsonl); });

  auto* info = group->add_subcommand("info", "Print vocabulary size, special ids and hash");
  info->add_option("--tokenizer,-t", codec->tokenizer, "tokenizer.json")->required();
  info->callback([codec] { run_info(codec->tokenizer); });
}

NEXTN_REGISTER_COMMAND(30, setup_tokenizer);

}  // namespace
}  // namespace nextn::cli
