#include "nextn/data/token_dataset.h"

#include <filesystem>

#include "nextn/io/atomic_file.h"
#include "nextn/io/json_strict.h"
#include "nextn/util/error.h"
#include "nextn/util/sha256.h"

namespace nextn::data {

namespace fs = std::filesystem;

struct TokenDataset::State {
  std::string dir;
  DatasetManifest manifest;
  std::vector<TokenShard> train;
  std::vector<TokenShard> validation;
};

namespace {

DatasetManifest read_manifest(const std::string& dir) {
  std::string path = (fs::path(dir) / kManifestFile).string();
  NEXTN_CHECK(fs::is_directory(dir), "dataset directory '", dir, "' does not exist");
  NEXTN_CHECK(io::file_exists(path), "'", dir, "' is not a nextn dataset (no ", kManifestFile,
              "; was `nextn data prepare` interrupted?)");
  const nlohmann::json json = io::parse_json_rejecting_duplicate_keys(io::read_file(path), "'" + path + "'");
  return DatasetManifest::from_json(json, path);
}

void check_tokenizer(const std::string& dir, const DatasetManifest& manifest,
                     const tokenizer::Tokenizer* expected) {
  std::string path = (fs::path(dir) / kDatasetTokenizerFile).string();
  tokenizer::Tokenizer own = tokenizer::Tokenizer::load(path);
  NEXTN_CHECK(own.hash() == manifest.tokenizer_hash, path, " does not match the manifest: its hash is ",
              own.hash(), ", the manifest says ", manifest.tokenizer_hash);
  NEXTN_CHECK(own.vocab_size() == manifest.vocab_size && own.find_eos_id() == manifest.eos_id, path,
              ": vocabulary size or EOS id differ from the manifest");
  if (expected) {
    NEXTN_CHECK(expected->hash() == manifest.tokenizer_hash, "dataset '", dir,
                "' was made with another tokenizer (", manifest.tokenizer_hash, ") than the one given (",
                expected->hash(), ")");
  }
}

std::vector<TokenShard> open_shards(const std::string& dir, const DatasetManifest& manifest, Split split,
                                    bool verify) {
  std::vector<TokenShard> shards;
  for (const ShardInfo& info : manifest.split(split).shards) {
    std::string path = (fs::path(dir) / info.file).string();
    NEXTN_CHECK(io::file_exists(path), "shard '", path, "' listed in the manifest does not exist");
    shards.emplace_back(path, info, manifest.token_dtype, manifest.vocab_size, verify);
  }
  return shards;
}

}  // namespace

TokenDataset TokenDataset::open(const std::string& dir, const tokenizer::Tokenizer* expected_tokenizer,
                                DatasetOpenOptions options) {
  auto state = std::make_shared<State>();
  state->dir = dir;
  state->manifest = read_manifest(dir);
  check_tokenizer(dir, state->manifest, expected_tokenizer);
  state->train = open_shards(dir, state->manifest, Split::kTrain, options.verify_checksums);
  state->validation = open_shards(dir, state->manifest, Split::kValidation, options.verify_checksums);
  TokenDataset dataset;
  dataset.state_ = std::move(state);
  return dataset;
}

const std::string& TokenDataset::dir() const { return state_->dir; }
const DatasetManifest& TokenDataset::manifest() const { return state_->manifest; }

const std::vector<TokenShard>& TokenDataset::shards(Split split) const {
  return split == Split::kTrain ? state_->train : state_->validation;
}

int64_t TokenDataset::num_tokens(Split split) const { return state_->manifest.split(split).tokens; }
int64_t TokenDataset::num_documents(Split split) const { return state_->manifest.split(split).documents; }

tokenizer::Tokenizer TokenDataset::load_tokenizer() const {
  return tokenizer::Tokenizer::load((fs::path(state_->dir) / kDatasetTokenizerFile).string());
}

std::string TokenDataset::fingerprint(Split split) const {
  Sha256 hash;
  hash.update(state_->manifest.tokenizer_hash);
  for (const ShardInfo& shard : state_->manifest.split(split).shards) {
    hash.update(cat("|", shard.file, ":", shard.tokens, ":", shard.sha256));
  }
  return "sha256:" + hash.hex_digest();
}

}  // namespace nextn::data
