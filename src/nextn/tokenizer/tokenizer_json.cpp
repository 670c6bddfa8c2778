#include "nextn/tokenizer/tokenizer_json.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <initializer_list>

#include "nextn/io/json_strict.h"
#include "nextn/util/error.h"

namespace nextn::tokenizer {
namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// Knows the file being read so that every error names it, plus the field path.
struct JsonReader {
  std::string source;

  [[noreturn]] void error(const std::string& where, const std::string& what) const {
    fail(source, ": ", where, ": ", what);
  }

  const json& require(const json& object, const char* key, const std::string& where) const {
    auto it = object.find(key);
    if (it == object.end()) error(where, cat("missing field '", key, "'"));
    return *it;
  }

  void expect_object(const json& value, const std::string& where) const {
    if (!value.is_object()) error(where, cat("expected an object, found ", value.type_name()));
  }

  // Unknown fields may be features nextn does not implement; refusing them is safer than
  // tokenising differently from the file's author.
  void allow_only(const json& object, const std::string& where, std::initializer_list<const char*> keys) const {
    expect_object(object, where);
    for (auto it = object.begin(); it != object.end(); ++it) {
      bool known = std::any_of(keys.begin(), keys.end(), [&](const char* key) { return it.key() == key; });
      if (!known) error(where, cat("unsupported field '", it.key(), "'"));
    }
  }

  std::string string_value(const json& value, const std::string& where) const {
    if (!value.is_string()) error(where, cat("expected a string, found ", value.type_name()));
    return value.get<std::string>();
  }

  bool bool_value(const json& value, const std::string& where) const {
    if (!value.is_boolean()) error(where, cat("expected true or false, found ", value.type_name()));
    return value.get<bool>();
  }

  bool optional_bool(const json& object, const char* key, bool fallback, const std::string& where) const {
    auto it = object.find(key);
    if (it == object.end() || it->is_null()) return fallback;
    return bool_value(*it, where + "." + key);
  }

  int32_t id_value(const json& value, const std::string& where) const {
    if (!value.is_number_integer()) error(where, cat("expected an integer id, found ", value.type_name()));
    int64_t id = value.get<int64_t>();
    if (id < 0 || id > INT32_MAX - 1) error(where, cat("id ", id, " is out of range"));
    return int32_t(id);
  }

  std::string type_of(const json& object, const std::string& where) const {
    expect_object(object, where);
    return string_value(require(object, "type", where), where + ".type");
  }

  void require_null(const json& object, const char* key, const std::string& where, const char* why) const {
    auto it = object.find(key);
    if (it != object.end() && !it->is_null()) error(where + "." + key, cat("must be null: ", why));
  }
};

// ByteLevel as pre-tokenizer: returns use_regex (Hugging Face's default is true).
bool parse_byte_level(const JsonReader& r, const json& node, const std::string& where) {
  r.allow_only(node, where, {"type", "add_prefix_space", "trim_offsets", "use_regex"});
  if (r.optional_bool(node, "add_prefix_space", false, where)) {
    r.error(where + ".add_prefix_space", "true is not supported (nextn never adds a prefix space)");
  }
  r.optional_bool(node, "trim_offsets", true, where);  // affects offsets only
  return r.optional_bool(node, "use_regex", true, where);
}

SplitPattern parse_split(const JsonReader& r, const json& node, const std::string& where) {
  r.allow_only(node, where, {"type", "pattern", "behavior", "invert"});
  const json& pattern = r.require(node, "pattern", where);
  r.expect_object(pattern, where + ".pattern");
  SplitPattern split;
  if (pattern.size() == 1 && pattern.contains("Regex")) {
    split.pattern = r.string_value(pattern["Regex"], where + ".pattern.Regex");
  } else if (pattern.size() == 1 && pattern.contains("String")) {
    split.pattern = r.string_value(pattern["String"], where + ".pattern.String");
    split.is_literal = true;
  } else {
    r.error(where + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
  }
  std::string behavior = r.string_value(r.require(node, "behavior", where), where + ".behavior");
  if (behavior != "Isolated") {
    r.error(where + ".behavior", cat("'", behavior, "' is not supported (only 'Isolated')"));
  }
  if (r.optional_bool(node, "invert", false, where)) r.error(where + ".invert", "true is not supported");
  return split;
}

PreTokenizerSpec parse_pre_tokenizer(const JsonReader& r, const json& node) {
  const std::string where = "pre_tokenizer";
  if (node.is_null()) r.error(where, "is null; nextn needs a ByteLevel pre-tokenizer");
  std::string type = r.type_of(node, where);
  PreTokenizerSpec spec;
  if (type == "ByteLevel") {
    spec.byte_level_use_regex = parse_byte_level(r, node, where);
    return spec;
  }
  if (type != "Sequence") r.error(where, cat("type '", type, "' is not supported (ByteLevel or Sequence)"));
  r.allow_only(node, where, {"type", "pretokenizers"});
  const json& steps = r.require(node, "pretokenizers", where);
  if (!steps.is_array()) r.error(where + ".pretokenizers", "expected an array");
  bool seen_byte_level = false;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    std::string step_where = cat(where, ".pretokenizers[", i, "]");
    std::string step_type = r.type_of(steps[i], step_where);
    if (seen_byte_level) r.error(step_where, "nextn supports ByteLevel only as the last pre-tokenizer");
    if (step_type == "Split") {
      spec.splits.push_back(parse_split(r, steps[i], step_where));
    } else if (step_type == "ByteLevel") {
      spec.byte_level_use_regex = parse_byte_level(r, steps[i], step_where);
      seen_byte_level = true;
    } else {
      r.error(step_where, cat("pre-tokenizer type '", step_type, "' is not supported (Split, ByteLevel)"));
    }
  }
  if (!seen_byte_level) r.error(where, "has no ByteLevel step; nextn tokenizers are byte-level");
  return spec;
}

void check_normalizer(const JsonReader& r, const json& node) {
  if (node.is_null()) return;
  std::string type = r.type_of(node, "normalizer");
  if (type == "Sequence") {
    const json& list = r.require(node, "normalizers", "normalizer");
    if (list.is_array() && list.empty()) return;
    r.error("normalizer", "a non-empty Sequence is not supported (nextn has no normalizers)");
  }
  r.error("normalizer", cat("type '", type, "' is not supported (nextn has no normalizers)"));
}

void check_decoder(const JsonReader& r, const json& node) {
  if (node.is_null()) r.error("decoder", "is null; nextn needs the ByteLevel decoder");
  std::string type = r.type_of(node, "decoder");
  if (type != "ByteLevel") r.error("decoder", cat("type '", type, "' is not supported (only ByteLevel)"));
  r.allow_only(node, "decoder", {"type", "add_prefix_space", "trim_offsets", "use_regex"});
}

void check_post_processor(const JsonReader& r, const json& node) {
  if (node.is_null()) return;
  std::string type = r.type_of(node, "post_processor");
  if (type != "ByteLevel") {
    r.error("post_processor", cat("type '", type, "' is not supported (ByteLevel or null; nextn adds BOS/EOS itself)"));
  }
  r.allow_only(node, "post_processor", {"type", "add_prefix_space", "trim_offsets", "use_regex"});
}

std::vector<AddedToken> parse_added_tokens(const JsonReader& r, const json& list) {
  if (!list.is_array()) r.error("added_tokens", "expected an array");
  std::vector<AddedToken> tokens;
  for (std::size_t i = 0; i < list.size(); ++i) {
    std::string where = cat("added_tokens[", i, "]");
    const json& node = list[i];
    r.expect_object(node, where);
    r.allow_only(node, where, {"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"});
    AddedToken token;
    token.id = r.id_value(r.require(node, "id", where), where + ".id");
    token.content = r.string_value(r.require(node, "content", where), where + ".content");
    for (const char* flag : {"single_word", "lstrip", "rstrip"}) {
      if (r.optional_bool(node, flag, false, where)) {
        r.error(cat(where, ".", flag), cat("true is not supported (token '", token.content, "')"));
      }
    }
    token.special = r.optional_bool(node, "special", false, where);
    token.normalized = r.optional_bool(node, "normalized", !token.special, where);
    tokens.push_back(std::move(token));
  }
  return tokens;
}

std::pair<std::string, std::string> parse_merge(const JsonReader& r, const json& node, std::size_t rank) {
  std::string where = cat("model.merges[", rank, "]");
  if (node.is_string()) {
    std::string line = node.get<std::string>();
    std::size_t space = line.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string::npos) {
      r.error(where, cat("'", line, "' is not two tokens separated by one space"));
    }
    return {line.substr(0, space), line.substr(space + 1)};
  }
  if (node.is_array() && node.size() == 2 && node[0].is_string() && node[1].is_string()) {
    return {node[0].get<std::string>(), node[1].get<std::string>()};
  }
  r.error(where, "expected \"left right\" or [\"left\", \"right\"]");
}

void parse_model(const JsonReader& r, const json& node, TokenizerSpec& spec) {
  const std::string where = "model";
  std::string type = r.type_of(node, where);
  if (type != "BPE") r.error(where, cat("type '", type, "' is not supported (only BPE)"));
  r.allow_only(node, where,
               {"type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
                "fuse_unk", "byte_fallback", "ignore_merges", "vocab", "merges"});
  r.require_null(node, "dropout", where, "BPE dropout is not supported");
  for (const char* affix : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = node.find(affix);
    if (it != node.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty())) {
      r.error(cat(where, ".", affix), "is not supported (must be null)");
    }
  }
  if (r.optional_bool(node, "byte_fallback", false, where)) r.error(where + ".byte_fallback", "true is not supported");
  r.optional_bool(node, "fuse_unk", false, where);  // matters only with an unknown token, which never occurs
  spec.ignore_merges = r.optional_bool(node, "ignore_merges", false, where);
  auto unk = node.find("unk_token");
  if (unk != node.end() && !unk->is_null()) spec.unk_token = r.string_value(*unk, where + ".unk_token");

  const json& vocab = r.require(node, "vocab", where);
  r.expect_object(vocab, where + ".vocab");
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    spec.vocab.emplace_back(it.key(), r.id_value(it.value(), cat(where, ".vocab['", it.key(), "']")));
  }
  std::sort(spec.vocab.begin(), spec.vocab.end(), [](const auto& a, const auto& b) { return a.second < b.second; });

  const json& merges = r.require(node, "merges", where);
  if (!merges.is_array()) r.error(where + ".merges", "expected an array");
  spec.merges.reserve(merges.size());
  for (std::size_t rank = 0; rank < merges.size(); ++rank) spec.merges.push_back(parse_merge(r, merges[rank], rank));
}

ordered_json byte_level_json(bool add_prefix_space, bool trim_offsets, bool use_regex) {
  ordered_json node;
  node["type"] = "ByteLevel";
  node["add_prefix_space"] = add_prefix_space;
  node["trim_offsets"] = trim_offsets;
  node["use_regex"] = use_regex;
  return node;
}

ordered_json pre_tokenizer_json(const PreTokenizerSpec& spec) {
  ordered_json byte_level = byte_level_json(false, true, spec.byte_level_use_regex);
  if (spec.splits.empty()) return byte_level;
  ordered_json steps = ordered_json::array();
  for (const SplitPattern& split : spec.splits) {
    ordered_json step;
    step["type"] = "Split";
    step["pattern"][split.is_literal ? "String" : "Regex"] = split.pattern;
    step["behavior"] = "Isolated";
    step["invert"] = false;
    steps.push_back(std::move(step));
  }
  steps.push_back(std::move(byte_level));
  ordered_json node;
  node["type"] = "Sequence";
  node["pretokenizers"] = std::move(steps);
  return node;
}

ordered_json model_json(const TokenizerSpec& spec) {
  ordered_json model;
  model["type"] = "BPE";
  model["dropout"] = nullptr;
  model["unk_token"] = spec.unk_token ? ordered_json(*spec.unk_token) : ordered_json(nullptr);
  model["continuing_subword_prefix"] = nullptr;
  model["end_of_word_suffix"] = nullptr;
  model["fuse_unk"] = false;
  model["byte_fallback"] = false;
  // Written only when set: older Hugging Face releases do not know the field.
  if (spec.ignore_merges) model["ignore_merges"] = true;
  std::vector<std::pair<std::string, int32_t>> vocab = spec.vocab;
  std::sort(vocab.begin(), vocab.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  ordered_json vocab_json = ordered_json::object();
  for (const auto& [text, id] : vocab) vocab_json[text] = id;
  model["vocab"] = std::move(vocab_json);
  // "left right" strings, the format every Hugging Face release reads, unless a token itself
  // contains a space (possible only outside the byte-level alphabet): then [left, right] pairs.
  bool pairs = std::any_of(spec.merges.begin(), spec.merges.end(), [](const auto& merge) {
    return merge.first.find(' ') != std::string::npos || merge.second.find(' ') != std::string::npos;
  });
  ordered_json merges = ordered_json::array();
  for (const auto& [left, right] : spec.merges) {
    if (pairs) merges.push_back(ordered_json::array({left, right}));
    else merges.push_back(left + " " + right);
  }
  model["merges"] = std::move(merges);
  return model;
}

}  // namespace

TokenizerSpec parse_tokenizer_json(std::string_view json_text, const std::string& source_name) {
  JsonReader r{source_name};
  const json root = io::parse_json_rejecting_duplicate_keys(std::string(json_text), source_name);
  r.expect_object(root, "top level");
  r.allow_only(root, "top level",
               {"version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer",
                "post_processor", "decoder", "model"});
  r.require_null(root, "truncation", "top level", "truncation would cut encodings short");
  r.require_null(root, "padding", "top level", "padding would add tokens to encodings");
  TokenizerSpec spec;
  auto added = root.find("added_tokens");
  if (added != root.end() && !added->is_null()) spec.added_tokens = parse_added_tokens(r, *added);
  auto normalizer = root.find("normalizer");
  if (normalizer != root.end()) check_normalizer(r, *normalizer);
  spec.pre_tokenizer = parse_pre_tokenizer(r, r.require(root, "pre_tokenizer", "top level"));
  auto post_processor = root.find("post_processor");
  if (post_processor != root.end()) check_post_processor(r, *post_processor);
  check_decoder(r, r.require(root, "decoder", "top level"));
  parse_model(r, r.require(root, "model", "top level"), spec);
  return spec;
}

std::string write_tokenizer_json(const TokenizerSpec& spec) {
  ordered_json root;
  root["version"] = "1.0";
  root["truncation"] = nullptr;
  root["padding"] = nullptr;
  std::vector<AddedToken> added = spec.added_tokens;
  std::sort(added.begin(), added.end(), [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
  ordered_json added_json = ordered_json::array();
  for (const AddedToken& token : added) {
    ordered_json node;
    node["id"] = token.id;
    node["content"] = token.content;
    node["single_word"] = false;
    node["lstrip"] = false;
    node["rstrip"] = false;
    node["normalized"] = token.normalized;
    node["special"] = token.special;
    added_json.push_back(std::move(node));
  }
  root["added_tokens"] = std::move(added_json);
  root["normalizer"] = nullptr;
  root["pre_tokenizer"] = pre_tokenizer_json(spec.pre_tokenizer);
  root["post_processor"] = byte_level_json(true, false, true);
  root["decoder"] = byte_level_json(true, true, true);
  root["model"] = model_json(spec);
  return root.dump(2) + "\n";
}

}  // namespace nextn::tokenizer
