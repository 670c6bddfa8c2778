#include "nextn/data/manifest.h"

#include <algorithm>
#include <initializer_list>

#include "nextn/util/error.h"

namespace nextn::data {
namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

ordered_json split_json(const SplitInfo& split) {
  ordered_json shards = ordered_json::array();
  for (const ShardInfo& shard : split.shards) {
    ordered_json node;
    node["file"] = shard.file;
    node["tokens"] = shard.tokens;
    node["documents"] = shard.documents;
    node["sha256"] = shard.sha256;
    shards.push_back(std::move(node));
  }
  ordered_json node;
  node["documents"] = split.documents;
  node["tokens"] = split.tokens;
  node["shards"] = std::move(shards);
  return node;
}

struct ManifestReader {
  std::string source;

  [[noreturn]] void error(const std::string& where, const std::string& what) const {
    fail(source, ": ", where, ": ", what);
  }
  const json& require(const json& object, const char* key, const std::string& where) const {
    if (!object.is_object()) error(where, "expected an object");
    auto it = object.find(key);
    if (it == object.end()) error(where, cat("missing field '", key, "'"));
    return *it;
  }
  void allow_only(const json& object, const std::string& where, std::initializer_list<const char*> keys) const {
    if (!object.is_object()) error(where, cat("expected an object, found ", object.type_name()));
    for (auto it = object.begin(); it != object.end(); ++it) {
      bool known = std::any_of(keys.begin(), keys.end(), [&](const char* key) { return it.key() == key; });
      if (!known) error(where, cat("unknown field '", it.key(), "'"));
    }
  }
  int64_t integer(const json& object, const char* key, const std::string& where, int64_t min, int64_t max) const {
    const json& value = require(object, key, where);
    if (!value.is_number_integer()) error(where + "." + key, cat("expected an integer, found ", value.type_name()));
    int64_t n = value.get<int64_t>();
    if (n < min || n > max) error(where + "." + key, cat(n, " is out of range [", min, ", ", max, "]"));
    return n;
  }
  std::string string(const json& object, const char* key, const std::string& where) const {
    const json& value = require(object, key, where);
    if (!value.is_string()) error(where + "." + key, cat("expected a string, found ", value.type_name()));
    return value.get<std::string>();
  }
};

bool is_hex_digest(const std::string& text) {
  return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// A shard name must stay inside the dataset directory.
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != "..";
}

SplitInfo parse_split(const ManifestReader& r, const json& node, const std::string& where) {
  r.allow_only(node, where, {"documents", "tokens", "shards"});
  SplitInfo split;
  split.documents = r.integer(node, "documents", where, 0, INT64_MAX);
  split.tokens = r.integer(node, "tokens", where, 0, INT64_MAX);
  const json& shards = r.require(node, "shards", where);
  if (!shards.is_array()) r.error(where + ".shards", "expected an array");
  int64_t tokens = 0, documents = 0;
  for (std::size_t i = 0; i < shards.size(); ++i) {
    std::string shard_where = cat(where, ".shards[", i, "]");
    r.allow_only(shards[i], shard_where, {"file", "tokens", "documents", "sha256"});
    ShardInfo shard;
    shard.file = r.string(shards[i], "file", shard_where);
    if (!is_plain_file_name(shard.file)) r.error(shard_where + ".file", cat("'", shard.file, "' is not a file name"));
    shard.tokens = r.integer(shards[i], "tokens", shard_where, 0, INT64_MAX);
    shard.documents = r.integer(shards[i], "documents", shard_where, 0, INT64_MAX);
    shard.sha256 = r.string(shards[i], "sha256", shard_where);
    if (!is_hex_digest(shard.sha256)) r.error(shard_where + ".sha256", "expected 64 lowercase hex digits");
    tokens += shard.tokens;
    documents += shard.documents;
    split.shards.push_back(std::move(shard));
  }
  if (tokens != split.tokens) r.error(where, cat("tokens is ", split.tokens, " but its shards hold ", tokens));
  if (documents != split.documents) {
    r.error(where, cat("documents is ", split.documents, " but its shards hold ", documents));
  }
  return split;
}

}  // namespace

ordered_json DatasetManifest::to_json() const {
  ordered_json root;
  root["format"] = kDatasetFormat;
  root["version"] = kDatasetVersion;
  root["created_by"] = created_by;
  ordered_json tok;
  tok["file"] = kDatasetTokenizerFile;
  tok["hash"] = tokenizer_hash;
  tok["vocab_size"] = vocab_size;
  tok["bos_id"] = bos_id ? ordered_json(*bos_id) : ordered_json(nullptr);
  tok["eos_id"] = eos_id;
  tok["pad_id"] = pad_id;
  root["tokenizer"] = std::move(tok);
  root["token_dtype"] = to_string(token_dtype);
  root["document_separator"] = "eos";
  root["validation_fraction"] = validation_fraction;
  root["splits"]["train"] = split_json(train);
  root["splits"]["validation"] = split_json(validation);
  root["corpus"] = ordered_json::parse(corpus.is_null() ? std::string("{}") : corpus.dump());
  return root;
}

DatasetManifest DatasetManifest::from_json(const json& root, const std::string& source) {
  ManifestReader r{source};
  if (!root.is_object()) r.error("top level", "expected an object");
  r.allow_only(root, "top level",
               {"format", "version", "created_by", "tokenizer", "token_dtype", "document_separator",
                "validation_fraction", "splits", "corpus"});
  std::string format = r.string(root, "format", "top level");
  if (format != kDatasetFormat) r.error("format", cat("'", format, "' is not ", kDatasetFormat));
  int64_t version = r.integer(root, "version", "top level", 0, INT32_MAX);
  if (version != kDatasetVersion) {
    r.error("version", cat(version, " is not supported (this nextn reads version ", kDatasetVersion, ")"));
  }
  DatasetManifest m;
  m.created_by = r.string(root, "created_by", "top level");

  const json& tok = r.require(root, "tokenizer", "top level");
  r.allow_only(tok, "tokenizer", {"file", "hash", "vocab_size", "bos_id", "eos_id", "pad_id"});
  std::string file = r.string(tok, "file", "tokenizer");
  if (file != kDatasetTokenizerFile) r.error("tokenizer.file", cat("expected '", kDatasetTokenizerFile, "'"));
  m.tokenizer_hash = r.string(tok, "hash", "tokenizer");
  m.vocab_size = int32_t(r.integer(tok, "vocab_size", "tokenizer", 1, INT32_MAX));
  m.eos_id = int32_t(r.integer(tok, "eos_id", "tokenizer", 0, m.vocab_size - 1));
  m.pad_id = int32_t(r.integer(tok, "pad_id", "tokenizer", 0, m.vocab_size - 1));
  if (!r.require(tok, "bos_id", "tokenizer").is_null()) {
    m.bos_id = int32_t(r.integer(tok, "bos_id", "tokenizer", 0, m.vocab_size - 1));
  }

  m.token_dtype = [&] {
    try {
      return token_dtype_from_string(r.string(root, "token_dtype", "top level"));
    } catch (const Error& e) {
      r.error("token_dtype", e.what());
    }
  }();
  if (m.token_dtype == TokenDType::kUint16 && m.vocab_size > 65536) {
    r.error("token_dtype", cat("uint16 cannot hold a vocabulary of ", m.vocab_size));
  }
  if (r.string(root, "document_separator", "top level") != "eos") {
    r.error("document_separator", "only 'eos' is supported");
  }
  const json& fraction = r.require(root, "validation_fraction", "top level");
  if (!fraction.is_number() || fraction.get<double>() < 0 || fraction.get<double>() >= 1) {
    r.error("validation_fraction", "expected a number in [0, 1)");
  }
  m.validation_fraction = fraction.get<double>();

  const json& splits = r.require(root, "splits", "top level");
  r.allow_only(splits, "splits", {"train", "validation"});
  m.train = parse_split(r, r.require(splits, "train", "splits"), "splits.train");
  m.validation = parse_split(r, r.require(splits, "validation", "splits"), "splits.validation");
  m.corpus = r.require(root, "corpus", "top level");
  return m;
}

}  // namespace nextn::data
