// A small real dataset for training tests, built once per test process: a 384-token BPE
// tokenizer trained on the Python standard library's json package, and its token shards.
#pragma once

#include <filesystem>
#include <string>

#include "nextn/config/model_config.h"
#include "nextn/data/corpus_reader.h"
#include "nextn/data/dataset_builder.h"
#include "nextn/data/tokenizer_training.h"
#include "test_support.h"

namespace nextn::testing {

struct TinyCorpus {
  std::string root;         // temporary directory holding everything
  std::string dataset_dir;  // prepared dataset (with tokenizer.json)
  int32_t vocab_size = 0;
};

inline const TinyCorpus& tiny_corpus() {
  static TinyCorpus corpus = [] {
    TinyCorpus c;
    c.root = (std::filesystem::temp_directory_path() / ("nextn_tiny_corpus_" + std::to_string(::getpid()))).string();
    std::filesystem::remove_all(c.root);
    std::filesystem::create_directories(c.root);
    data::CorpusOptions corpus = data::python_stdlib_corpus();
    corpus.inputs = {corpus.inputs.at(0) + "/json"};
    data::TokenizerTrainingOptions options;
    options.bpe.vocab_size = 384;
    data::TokenizerTrainingReport report;
    tokenizer::Tokenizer tok = data::train_tokenizer(corpus, options, report);
    data::PrepareOptions prepare;
    prepare.corpus = corpus;
    prepare.output_dir = c.root + "/dataset";
    prepare.validation_fraction = 0.25;
    data::prepare_dataset(tok, prepare);
    c.dataset_dir = prepare.output_dir;
    c.vocab_size = tok.vocab_size();
    // The path is copied into a static constructed before the handler is registered, so that it
    // outlives the handler (the corpus itself is destroyed before it runs).
    static const std::string root_to_remove = c.root;
    std::atexit([] { std::filesystem::remove_all(root_to_remove); });
    return c;
  }();
  return corpus;
}

// The tiny preset with a vocabulary that fits the tiny corpus's tokenizer.
inline ModelConfig tiny_training_config() {
  ModelConfig c = model_config_from_json(preset_json("tiny"));
  c.vocab_size = 384;
  return c;
}

}  // namespace nextn::testing
