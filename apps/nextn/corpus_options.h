// The corpus options shared by `nextn tokenizer train`, `nextn data prepare` and
// `nextn bench tokenizer`. With no --input, the machine's Python standard library is the corpus.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>

#include "nextn/data/corpus_reader.h"

namespace nextn::cli {

struct CorpusFlags {
  std::vector<std::string> inputs;
  std::vector<std::string> include;
  std::vector<std::string> exclude;
  std::string text_field = "text";
};

inline void add_corpus_options(CLI::App& command, CorpusFlags& flags) {
  command.add_option("--input", flags.inputs,
                     "Files or directories (recursive); .jsonl = one JSON document per line. "
                     "Default: the Python standard library sources in /usr/lib/python3.*");
  command.add_option("--include", flags.include, "Globs for files in directories (default: all files)");
  command.add_option("--exclude", flags.exclude, "Globs for files and directories to leave out");
  command.add_option("--text-field", flags.text_field, "Field of .jsonl records that holds the text")
      ->capture_default_str();
}

inline data::CorpusOptions corpus_options_from(const CorpusFlags& flags) {
  data::CorpusOptions options;
  if (flags.inputs.empty()) {
    options = data::python_stdlib_corpus();
    if (!flags.include.empty()) options.include = flags.include;
    options.exclude.insert(options.exclude.end(), flags.exclude.begin(), flags.exclude.end());
  } else {
    options.inputs = flags.inputs;
    options.include = flags.include;
    options.exclude = flags.exclude;
  }
  options.text_field = flags.text_field;
  return options;
}

}  // namespace nextn::cli
