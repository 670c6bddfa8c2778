// `nextn data prepare`: corpus -> tokenizer -> token shards + manifest. Documents are encoded on
// worker threads in batches and written in corpus order, each followed by EOS, into the shards of
// their split (see split.h); a shard is closed after the document that takes it past
// shard_tokens. Memory is bounded by the batches in flight, not by the corpus. The tokenizer copy
// and the manifest are written last; every file is written atomically.
#pragma once

#include <functional>
#include <string>

#include "nextn/data/corpus_reader.h"
#include "nextn/data/manifest.h"
#include "nextn/tokenizer/tokenizer.h"

namespace nextn::data {

struct PrepareOptions {
  CorpusOptions corpus;
  std::string output_dir;
  double validation_fraction = 0.02;
  int64_t shard_tokens = int64_t(1) << 24;
  int threads = 1;
  // Replace an existing dataset in output_dir (only files nextn writes are removed; anything else
  // there is an error).
  bool overwrite = false;
};

struct PrepareReport {
  DatasetManifest manifest;
  CorpusStats corpus;
  double seconds = 0;
};

PrepareReport prepare_dataset(const tokenizer::Tokenizer& tokenizer, const PrepareOptions& options,
                              const std::function<void(const std::string&)>& log = {});

}  // namespace nextn::data
