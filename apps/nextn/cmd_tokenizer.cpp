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

void run_encode(const std::string& tokenizer_path, const std::string& text, const std::string& file,
                bool ordinary, bool show_tokens) {
  tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(tokenizer_path);
  std::string input = read_text_argument(text, file);
  std::vector<int32_t> ids = ordinary ? tok.encode_ordinary(input) : tok.encode(input);
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

void run_decode(const std::string& tokenizer_path, const std::string& ids_text, const std::string& file) {
  tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(tokenizer_path);
  std::string text = read_text_argument(ids_text, file);
  std::string bytes = tok.decode(parse_ids(text));
  std::cout.write(bytes.data(), std::streamsize(bytes.size()));
  std::cout.flush();
}

void run_info(const std::string& tokenizer_path) {
  tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(tokenizer_path);
  auto id_or_none = [](std::optional<int32_t> id) { return id ? std::to_string(*id) : std::string("none"); };
  std::cout << "tokenizer: " << tokenizer_path << "\n"
            << "vocabulary: " << tok.vocab_size() << " ids, " << tok.num_merges() << " merges, "
            << tok.spec().added_tokens.size() << " added tokens\n"
            << "pre-tokenizer: " << tokenizer::pre_tokenizer_name(tok.spec().pre_tokenizer)
            << (tok.pre_tokenizer().all_regexes_jit_compiled() ? " (PCRE2 JIT)" : " (PCRE2 interpreter)") << "\n"
            << "bos " << id_or_none(tok.find_bos_id()) << ", eos " << id_or_none(tok.find_eos_id())
            << ", pad " << (tok.find_eos_id() ? std::to_string(tok.pad_id()) : std::string("none")) << "\n"
            << "hash: " << tok.hash() << "\n";
}

void setup_tokenizer(CLI::App& app) {
  auto* group = app.add_subcommand("tokenizer", "Train and use byte-level BPE tokenizers (tokenizer.json)");
  group->require_subcommand(1);

  auto train_flags = std::make_shared<TokenizerTrainFlags>();
  auto* train = group->add_subcommand("train", "Learn a BPE vocabulary from a corpus");
  add_corpus_options(*train, train_flags->corpus);
  train->add_option("--vocab-size", train_flags->vocab_size, "Vocabulary size, special tokens included")
      ->capture_default_str()->check(CLI::Range(262, 1 << 24));
  train->add_option("--min-frequency", train_flags->min_frequency, "Never merge pairs seen fewer times")
      ->capture_default_str()->check(CLI::PositiveNumber);
  train->add_option("--pre-tokenizer", train_flags->pre_tokenizer, "deepseek-v3, gpt2 or simple")
      ->capture_default_str();
  train->add_option("--output,-o", train_flags->output, "Where to write tokenizer.json")->required();
  train->add_option("--threads", train_flags->threads, "Worker threads (0 = all cores)")->capture_default_str();
  train->callback([train_flags] { run_tokenizer_train(*train_flags); });

  struct CodecFlags {
    std::string tokenizer, text, file;
    bool ordinary = false, show_tokens = false;
  };
  auto codec = std::make_shared<CodecFlags>();
  auto* encode = group->add_subcommand("encode", "Print the token ids of a text");
  encode->add_option("--tokenizer,-t", codec->tokenizer, "tokenizer.json")->required();
  encode->add_option("--text", codec->text, "The text");
  encode->add_option("--file", codec->file, "Read the text from a file ('-' = stdin)");
  encode->add_flag("--ordinary", codec->ordinary, "Treat special-token spellings as ordinary text");
  encode->add_flag("--show-tokens", codec->show_tokens, "One id per line with its token");
  encode->callback([codec] { run_encode(codec->tokenizer, codec->text, codec->file, codec->ordinary, codec->show_tokens); });

  auto* decode = group->add_subcommand("decode", "Write the bytes of token ids to stdout");
  decode->add_option("--tokenizer,-t", codec->tokenizer, "tokenizer.json")->required();
  decode->add_option("--ids", codec->text, "Ids separated by spaces or commas");
  decode->add_option("--file", codec->file, "Read the ids from a file ('-' = stdin)");
  decode->callback([codec] { run_decode(codec->tokenizer, codec->text, codec->file); });

  auto* info = group->add_subcommand("info", "Print vocabulary size, special ids and hash");
  info->add_option("--tokenizer,-t", codec->tokenizer, "tokenizer.json")->required();
  info->callback([codec] { run_info(codec->tokenizer); });
}

NEXTN_REGISTER_COMMAND(30, setup_tokenizer);

}  // namespace
}  // namespace nextn::cli
