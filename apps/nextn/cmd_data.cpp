// `nextn data prepare | info`: token datasets (shards + manifest) from text corpora. With no
// --input, prepare uses the machine's Python standard library sources and, with no --tokenizer,
// trains a tokenizer on the training documents first.
#include <iomanip>
#include <iostream>
#include <thread>

#include "command_registry.h"
#include "corpus_options.h"
#include "nextn/data/dataset_builder.h"
#include "nextn/data/token_dataset.h"
#include "nextn/data/tokenizer_training.h"
#include "nextn/util/error.h"
#include "nextn/util/runtime_info.h"

namespace nextn::cli {
namespace {

struct PrepareFlags {
  CorpusFlags corpus;
  std::string tokenizer_path;
  int32_t vocab_size = 8192;
  std::string pre_tokenizer = "deepseek-v3";
  std::string output;
  double validation_fraction = 0.05;
  int64_t shard_tokens = int64_t(1) << 24;
  int threads = 0;
  bool overwrite = false;
};

constexpr const char* kDefaultOutput = "data/python-stdlib";

void run_prepare(const PrepareFlags& flags) {
  const int threads = resolve_thread_count(flags.threads);
  NEXTN_CHECK(!flags.output.empty() || flags.corpus.inputs.empty(),
              "--output is required with --input (the default is only for the default corpus)");
  data::PrepareOptions options;
  options.corpus = corpus_options_from(flags.corpus);
  options.output_dir = flags.output.empty() ? kDefaultOutput : flags.output;
  options.validation_fraction = flags.validation_fraction;
  options.shard_tokens = flags.shard_tokens;
  options.threads = threads;
  options.overwrite = flags.overwrite;
  auto log = [](const std::string& line) { std::cerr << line << "\n"; };
  std::cerr << "corpus: " << options.corpus.inputs.front() << (options.corpus.inputs.size() > 1 ? " ..." : "") << "\n";

  tokenizer::Tokenizer tok = [&] {
    if (!flags.tokenizer_path.empty()) return tokenizer::Tokenizer::load(flags.tokenizer_path);
    data::TokenizerTrainingOptions training;
    training.bpe.vocab_size = flags.vocab_size;
    training.bpe.pre_tokenizer = tokenizer::pre_tokenizer_by_name(flags.pre_tokenizer);
    training.threads = threads;
    training.exclude_validation_ppm = data::fraction_to_ppm(flags.validation_fraction);
    std::cerr << "no --tokenizer: training a " << flags.vocab_size << "-token tokenizer on the training documents\n";
    data::TokenizerTrainingReport report;
    tokenizer::Tokenizer trained = data::train_tokenizer(options.corpus, training, report, log);
    std::cerr << "tokenizer trained in " << report.count_seconds + report.merge_seconds << " s\n";
    return trained;
  }();

  data::PrepareReport report = data::prepare_dataset(tok, options, {});
  const data::DatasetManifest& m = report.manifest;
  std::cout << "wrote " << options.output_dir << " in " << std::setprecision(3) << report.seconds << " s: "
            << m.train.tokens << " train tokens (" << m.train.documents << " documents, " << m.train.shards.size()
            << " shards), " << m.validation.tokens << " validation tokens (" << m.validation.documents
            << " documents), " << to_string(m.token_dtype) << ", vocabulary " << m.vocab_size << ", eos "
            << m.eos_id << "\n"
            << "corpus: " << report.corpus.describe() << "\n";
  if (m.validation.documents == 0) {
    std::cout << "note: no validation documents (the corpus has fewer than 1 / validation fraction documents)\n";
  }
}

void run_info(const std::string& dir, bool verify) {
  data::DatasetOpenOptions options;
  options.verify_checksums = verify;
  data::TokenDataset dataset = data::TokenDataset::open(dir, nullptr, options);
  const data::DatasetManifest& m = dataset.manifest();
  std::cout << "dataset: " << dir << " (" << m.created_by << ")\n"
            << "tokenizer: " << m.tokenizer_hash << ", vocabulary " << m.vocab_size << ", eos " << m.eos_id
            << ", bos " << (m.bos_id ? std::to_string(*m.bos_id) : std::string("none")) << ", pad " << m.pad_id << "\n"
            << "tokens: " << to_string(m.token_dtype) << "\n";
  for (data::Split split : {data::Split::kTrain, data::Split::kValidation}) {
    const data::SplitInfo& info = m.split(split);
    std::cout << to_string(split) << ": " << info.tokens << " tokens, " << info.documents << " documents, "
              << info.shards.size() << " shards\n";
  }
  std::cout << (verify ? "every shard's size, header and SHA-256 checked" : "sizes and headers checked") << "\n";
}

void setup_data(CLI::App& app) {
  auto* group = app.add_subcommand("data", "Prepare and inspect token datasets");
  group->require_subcommand(1);

  auto flags = std::make_shared<PrepareFlags>();
  auto* prepare = group->add_subcommand("prepare", "Tokenize a corpus into shards with a manifest");
  add_corpus_options(*prepare, flags->corpus);
  prepare->add_option("--tokenizer,-t", flags->tokenizer_path, "tokenizer.json (default: train one, see --vocab-size)");
  prepare->add_option("--vocab-size", flags->vocab_size, "Vocabulary size of the tokenizer trained without --tokenizer")
      ->capture_default_str()->check(CLI::Range(262, 1 << 24));
  prepare->add_option("--pre-tokenizer", flags->pre_tokenizer, "Pre-tokenizer of that tokenizer")->capture_default_str();
  prepare->add_option("--output,-o", flags->output, std::string("Dataset directory (default ") + kDefaultOutput +
                                                        " for the default corpus)");
  prepare->add_option("--validation-fraction", flags->validation_fraction, "Share of documents held out")
      ->capture_default_str()->check(CLI::Range(0.0, 0.999));
  prepare->add_option("--shard-tokens", flags->shard_tokens, "Tokens per shard (shards end at document ends)")
      ->capture_default_str()->check(positive());
  prepare->add_option("--threads", flags->threads, "Worker threads (0 = all cores)")->capture_default_str()
      ->check(non_negative());
  prepare->add_flag("--overwrite", flags->overwrite, "Replace the dataset already in the output directory");
  prepare->callback([flags] { run_prepare(*flags); });

  auto dir = std::make_shared<std::string>();
  auto no_verify = std::make_shared<bool>(false);
  auto* info = group->add_subcommand("info", "Validate a dataset and print its contents");
  info->add_option("--dataset,-d", *dir, "Dataset directory")->required();
  info->add_flag("--no-verify", *no_verify, "Skip the SHA-256 of every shard");
  info->callback([dir, no_verify] { run_info(*dir, !*no_verify); });
}

NEXTN_REGISTER_COMMAND(40, setup_data);

}  // namespace
}  // namespace nextn::cli
