// manifest.json of a prepared dataset: which tokenizer made it (hash, vocabulary size, special
// ids, so that a trainer can check its model config), the token type, and per split the
// documents, tokens and shards (file, tokens, documents, SHA-256). It is written last, atomically:
// a directory with a manifest is a complete dataset.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "nextn/data/shard_format.h"
#include "nextn/data/split.h"

namespace nextn::data {

inline constexpr const char* kManifestFile = "manifest.json";
inline constexpr const char* kDatasetTokenizerFile = "tokenizer.json";
inline constexpr const char* kDatasetFormat = "nextn-token-dataset";
inline constexpr int kDatasetVersion = 1;

struct ShardInfo {
  std::string file;  // name inside the dataset directory
  int64_t tokens = 0;
  int64_t documents = 0;  // documents that start in this shard (each ends with EOS)
  std::string sha256;     // of the whole file, header included
};

struct SplitInfo {
  int64_t documents = 0;
  int64_t tokens = 0;
  std::vector<ShardInfo> shards;
};

struct DatasetManifest {
  std::string tokenizer_hash;
  int32_t vocab_size = 0;
  int32_t eos_id = 0;
  std::optional<int32_t> bos_id;
  int32_t pad_id = 0;
  TokenDType token_dtype = TokenDType::kUint16;
  double validation_fraction = 0;
  SplitInfo train;
  SplitInfo validation;
  nlohmann::json corpus;  // what was read: inputs, globs, counts (informational)
  std::string created_by;

  const SplitInfo& split(Split which) const { return which == Split::kTrain ? train : validation; }
  SplitInfo& split(Split which) { return which == Split::kTrain ? train : validation; }

  nlohmann::ordered_json to_json() const;
  // Validates every field; `source` (the path) prefixes errors.
  static DatasetManifest from_json(const nlohmann::json& json, const std::string& source);
};

}  // namespace nextn::data
