// Small corpora, tokenizers and datasets for the data tests, built in temporary directories.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "nextn/data/dataset_builder.h"
#include "nextn/io/atomic_file.h"
#include "nextn/tokenizer/bpe_trainer.h"
#include "nextn/tokenizer/tokenizer.h"
#include "nextn/util/error.h"

namespace nextn::data::testing {

namespace fs = std::filesystem;

// A fresh directory, removed with everything in it when the object goes.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    std::random_device random;
    path_ = fs::temp_directory_path() /
            ("nextn_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + std::to_string(random()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string path() const { return path_.string(); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

inline void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  io::write_file_atomic(path, text);
}

// Document i of the generated corpus: Python-like code of varying length.
inline std::string corpus_document(int i) {
  std::string text = "def function_" + std::to_string(i) + "(x):\n";
  for (int j = 0; j < i % 7 + 2; ++j) {
    text += "    x = x * " + std::to_string(i * j) + " + " + std::to_string(j) + "  # step " + std::to_string(j) + "\n";
  }
  if (i % 5 == 3) text += "    # caf\xC3\xA9 \xE4\xB8\x96\xE7\x95\x8C\n";
  return text + "    return x\n";
}

// Writes documents 0..count-1 as doc_00.py, doc_01.py, ... (sorted order = document order).
inline std::vector<std::string> write_corpus(const std::string& dir, int count) {
  std::vector<std::string> documents;
  for (int i = 0; i < count; ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "doc_%02d.py", i);
    documents.push_back(corpus_document(i));
    write_text((fs::path(dir) / name).string(), documents.back());
  }
  return documents;
}

inline tokenizer::Tokenizer corpus_tokenizer(int32_t vocab_size = 6 + 256 + 100) {
  tokenizer::BpeTrainerOptions options;
  options.vocab_size = vocab_size;
  tokenizer::PreTokenizer pre_tokenizer(options.pre_tokenizer);
  tokenizer::PieceCounts counts;
  for (int i = 0; i < 30; ++i) counts.add_text(pre_tokenizer, corpus_document(i));
  return tokenizer::Tokenizer(tokenizer::train_bpe(counts, options));
}

inline PrepareOptions prepare_options(const std::string& corpus_dir, const std::string& output_dir) {
  PrepareOptions options;
  options.corpus.inputs = {corpus_dir};
  options.output_dir = output_dir;
  options.validation_fraction = 0.2;  // documents 4, 9, 14, ...
  options.shard_tokens = 300;         // several shards per split
  options.threads = 2;
  return options;
}

// Runs `action` and expects a nextn::Error whose message contains `fragment`.
template <typename F>
void expect_error(F&& action, const std::string& fragment) {
  try {
    action();
    FAIL() << "expected an error with '" << fragment << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

}  // namespace nextn::data::testing
