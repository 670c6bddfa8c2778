// `nextn bench tokenizer`: the tokenizer's speed figures. Trains a tokenizer on the corpus (the
// Python standard library by default; target: 8192 tokens in under 60 s on 2 cores), then
// measures encoding on ONE core (first pass with an empty piece cache, then a second pass with the
// cache warm), pre-tokenisation alone and decoding, and checks that every document round-trips.
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <thread>

#include "command_registry.h"
#include "corpus_options.h"
#include "nextn/data/tokenizer_training.h"
#include "nextn/io/atomic_file.h"
#include "nextn/tokenizer/tokenizer.h"
#include "nextn/tokenizer/unicode.h"

#include <nlohmann/json.hpp>
#include "nextn/util/error.h"
#include "nextn/util/runtime_info.h"

namespace nextn::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct BenchFlags {
  CorpusFlags corpus;
  std::string tokenizer_path;
  int32_t vocab_size = 8192;
  std::string pre_tokenizer = "deepseek-v3";
  int threads = 0;
  bool hugging_face = false;
};

std::string megabytes_per_second(int64_t bytes, double seconds) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << double(bytes) / 1e6 / seconds << " MB/s";
  return out.str();
}

struct EncodeTimings {
  double cold_seconds = 0;
  double warm_seconds = 0;
  double pre_tokenize_seconds = 0;
  double decode_seconds = 0;
  int64_t tokens = 0;
  int64_t mismatches = 0;
};

// Runs on a thread of its own so that the piece cache (per thread) starts empty.
EncodeTimings time_encoding(const tokenizer::Tokenizer& tok, const std::vector<std::string>& documents) {
  EncodeTimings t;
  std::vector<std::vector<int32_t>> encoded(documents.size());
  auto start = Clock::now();
  for (std::size_t i = 0; i < documents.size(); ++i) encoded[i] = tok.encode_ordinary(documents[i]);
  t.cold_seconds = seconds_since(start);
  start = Clock::now();
  for (const std::string& document : documents) t.tokens += int64_t(tok.encode_ordinary(document).size());
  t.warm_seconds = seconds_since(start);
  start = Clock::now();
  int64_t pieces = 0;
  std::vector<std::string_view> views;
  for (const std::string& document : documents) {
    views.clear();
    tok.pre_tokenizer().split(document, views);
    pieces += int64_t(views.size());
  }
  t.pre_tokenize_seconds = seconds_since(start);
  start = Clock::now();
  std::vector<std::string> decoded(documents.size());
  for (std::size_t i = 0; i < documents.size(); ++i) decoded[i] = tok.decode(encoded[i]);
  t.decode_seconds = seconds_since(start);
  for (std::size_t i = 0; i < documents.size(); ++i) t.mismatches += decoded[i] != documents[i];
  return t;
}

// Every document encoded by `threads` threads (documents dealt round-robin; each thread has its
// own piece cache). Returns the wall time.
double time_parallel_encoding(const tokenizer::Tokenizer& tok, const std::vector<std::string>& documents, int threads) {
  auto start = Clock::now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (std::size_t i = std::size_t(t); i < documents.size(); i += std::size_t(threads)) tok.encode_ordinary(documents[i]);
    });
  }
  for (std::thread& worker : workers) worker.join();
  return seconds_since(start);
}

// The same documents through Hugging Face tokenizers (its npm build, bench/hf_tokenizer.mjs):
// one thread, then encodeBatch on all cores.
void run_hugging_face(const std::string& tokenizer_path, const std::vector<std::string>& documents, int threads) {
  const std::string script = "bench/hf_tokenizer.mjs";
  NEXTN_CHECK(io::file_exists(script), "--hf needs ", script, ": run from the repository root (with scripts/setup.sh's npm packages)");
  NEXTN_CHECK(!tokenizer_path.empty(), "--hf needs --tokenizer (a tokenizer.json both libraries read)");
  const std::string documents_path = (std::filesystem::temp_directory_path() / cat("nextn-bench-", ::getpid(), ".jsonl")).string();
  {
    std::string lines;
    for (const std::string& document : documents) lines += nlohmann::json(tokenizer::to_valid_utf8_lossy(document)).dump() + "\n";
    io::write_file_atomic(documents_path, lines);
  }
  std::cout.flush();
  const std::string command = cat("node ", script, " '", tokenizer_path, "' '", documents_path, "' ", threads);
  int status = std::system(command.c_str());
  std::filesystem::remove(documents_path);
  NEXTN_CHECK(status == 0, "the Hugging Face measurement failed (", command, ")");
}

void run_bench(const BenchFlags& flags) {
  const int threads = resolve_thread_count(flags.threads);
  std::cout << describe(runtime_info()) << "\n";
  data::CorpusOptions corpus = corpus_options_from(flags.corpus);

  tokenizer::Tokenizer tok = [&] {
    if (!flags.tokenizer_path.empty()) return tokenizer::Tokenizer::load(flags.tokenizer_path);
    data::TokenizerTrainingOptions options;
    options.bpe.vocab_size = flags.vocab_size;
    options.bpe.pre_tokenizer = tokenizer::pre_tokenizer_by_name(flags.pre_tokenizer);
    options.threads = threads;
    data::TokenizerTrainingReport report;
    auto start = Clock::now();
    tokenizer::Tokenizer trained = data::train_tokenizer(corpus, options, report);
    double seconds = seconds_since(start);
    std::cout << "train: " << trained.vocab_size() << "-token vocabulary (" << flags.pre_tokenizer << ") on "
              << report.corpus.bytes / 1e6 << " MB (" << report.corpus.documents << " documents) in "
              << std::setprecision(3) << seconds << " s with " << threads << " threads (counting "
              << report.count_seconds << " s, merging " << report.merge_seconds << " s)\n";
    return trained;
  }();

  std::vector<std::string> documents;
  int64_t bytes = 0;
  data::CorpusReader reader(corpus);
  data::Document document;
  while (reader.next(document)) {
    bytes += int64_t(document.text.size());
    documents.push_back(std::move(document.text));
  }
  NEXTN_CHECK(!documents.empty(), "no usable documents in the input (", reader.stats().describe(), ")");

  EncodeTimings t;
  std::thread worker([&] { t = time_encoding(tok, documents); });
  worker.join();
  std::cout << "encode (1 core, empty piece cache): " << megabytes_per_second(bytes, t.cold_seconds) << " ("
            << bytes / 1e6 << " MB -> " << t.tokens << " tokens, " << std::setprecision(3)
            << double(bytes) / double(t.tokens) << " bytes/token)\n"
            << "encode (1 core, warm piece cache): " << megabytes_per_second(bytes, t.warm_seconds) << "\n"
            << "pre-tokenize only (1 core): " << megabytes_per_second(bytes, t.pre_tokenize_seconds) << "\n"
            << "decode (1 core): " << megabytes_per_second(bytes, t.decode_seconds) << "\n"
            << "round trip: " << (t.mismatches == 0 ? "every document decodes to itself" : cat(t.mismatches, " documents differ after decoding"))
            << "\n";
  // A tokenizer nextn trains is lossless; a loaded one may normalize (NFC...) or drop characters.
  NEXTN_CHECK(t.mismatches == 0 || !flags.tokenizer_path.empty(), t.mismatches, " documents did not round-trip");
  std::cout << "encode (" << threads << " threads): " << megabytes_per_second(bytes, time_parallel_encoding(tok, documents, threads))
            << "\n";
  if (flags.hugging_face) run_hugging_face(flags.tokenizer_path, documents, threads);
}

void setup_bench_tokenizer(CLI::App& app) {
  CLI::App& bench = command_group(app, "bench", "Benchmarks that report nextn's speed figures");
  auto flags = std::make_shared<BenchFlags>();
  auto* cmd = bench.add_subcommand("tokenizer", "Tokenizer training time, encode/decode MB/s, and Hugging Face's beside");
  add_corpus_options(*cmd, flags->corpus);
  cmd->add_option("--tokenizer,-t", flags->tokenizer_path, "Measure this tokenizer.json instead of training one");
  cmd->add_option("--vocab-size", flags->vocab_size, "Vocabulary size to train")->capture_default_str();
  cmd->add_option("--pre-tokenizer", flags->pre_tokenizer, "deepseek-v3, gpt2 or simple")->capture_default_str();
  cmd->add_option("--threads", flags->threads, "Threads for training and the parallel encode (0 = all cores)")
      ->capture_default_str();
  cmd->add_flag("--hf", flags->hugging_face, "Also time Hugging Face tokenizers (npm build) on the same documents");
  cmd->callback([flags] { run_bench(*flags); });
}

NEXTN_REGISTER_COMMAND(90, setup_bench_tokenizer);

}  // namespace
}  // namespace nextn::cli
