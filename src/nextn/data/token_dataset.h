// A prepared dataset opened for training and evaluation. Opening validates everything before
// any batch is drawn: the manifest (every field), the tokenizer copy against the manifest's hash,
// the caller's tokenizer (when given) against it too, and every shard's size, header and, unless
// skipped, SHA-256. Copies are cheap and share the memory-mapped shards.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nextn/data/manifest.h"
#include "nextn/data/shard_reader.h"
#include "nextn/data/split.h"
#include "nextn/tokenizer/tokenizer.h"

namespace nextn::data {

struct DatasetOpenOptions {
  bool verify_checksums = true;  // hash every shard (fast; off only for huge datasets)
};

class TokenDataset {
 public:
  // `expected_tokenizer`: the tokenizer the caller will decode with; a dataset made by another
  // one is an error. May be null.
  static TokenDataset open(const std::string& dir, const tokenizer::Tokenizer* expected_tokenizer = nullptr,
                           DatasetOpenOptions options = {});

  const std::string& dir() const;
  const DatasetManifest& manifest() const;
  const std::vector<TokenShard>& shards(Split split) const;
  int64_t num_tokens(Split split) const;
  int64_t num_documents(Split split) const;
  int32_t vocab_size() const { return manifest().vocab_size; }
  int32_t eos_id() const { return manifest().eos_id; }
  // The dataset's own tokenizer.json (identical, by hash, to the one that made it).
  tokenizer::Tokenizer load_tokenizer() const;
  // Identifies the contents of a split (a hash of its shards' hashes), for loader states.
  std::string fingerprint(Split split) const;

 private:
  struct State;
  std::shared_ptr<const State> state_;
};

}  // namespace nextn::data
