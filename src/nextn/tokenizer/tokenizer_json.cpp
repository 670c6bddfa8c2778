#include "nextn/tokenizer/tokenizer_json.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <initializer_list>

#include "nextn/io/json_strict.h"
#include "nextn/tokenizer/utf8.h"
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

// A {"String": ...} or {"Regex": ...} pattern object.
std::string parse_pattern(const JsonReader& r, const json& pattern, const std::string& where, bool& is_regex) {
  r.expect_object(pattern, where);
  if (pattern.size() == 1 && pattern.contains("Regex")) {
    is_regex = true;
    return r.string_value(pattern["Regex"], where + ".Regex");
  }
  if (pattern.size() == 1 && pattern.contains("String")) {
    is_regex = false;
    return r.string_value(pattern["String"], where + ".String");
  }
  r.error(where, "expected {\"Regex\": ...} or {\"String\": ...}");
}

ordered_json pattern_json(const std::string& pattern, bool is_regex) {
  ordered_json node;
  node[is_regex ? "Regex" : "String"] = pattern;
  return node;
}

// The elements of a Sequence's list field, each checked by `parse_one`.
template <typename ParseOne>
void parse_list(const JsonReader& r, const json& node, const char* field, const std::string& where, ParseOne parse_one) {
  const json& list = r.require(node, field, where);
  if (!list.is_array()) r.error(where + "." + field, "expected an array");
  for (std::size_t i = 0; i < list.size(); ++i) parse_one(list[i], cat(where, ".", field, "[", i, "]"));
}

// Appends the steps of `node`: a Sequence's (its `list_field`; nested Sequences flattened), or the
// node itself, read by parse_one.
template <typename Spec, typename ParseOne>
void parse_steps(const JsonReader& r, const json& node, const std::string& where, const char* list_field, Spec& spec,
                 ParseOne parse_one) {
  if (r.type_of(node, where) != "Sequence") {
    spec.steps.push_back(parse_one(r, node, where));
    return;
  }
  r.allow_only(node, where, {"type", list_field});
  parse_list(r, node, list_field, where, [&](const json& child, const std::string& w) {
    parse_steps(r, child, w, list_field, spec, parse_one);
  });
}

// A component: null, one step, or a Sequence of steps.
template <typename Spec, typename ParseOne>
Spec parse_component(const JsonReader& r, const json& node, const char* name, const char* list_field, ParseOne parse_one) {
  Spec spec;
  spec.present = !node.is_null();
  spec.as_sequence = false;
  if (!spec.present) return spec;
  spec.as_sequence = r.type_of(node, name) == "Sequence";
  parse_steps(r, node, name, list_field, spec, parse_one);
  return spec;
}

// ---- normalizer ----------------------------------------------------------------------------------

NormalizerStep parse_normalizer_step(const JsonReader& r, const json& node, const std::string& where) {
  using Kind = NormalizerStep::Kind;
  std::string type = r.type_of(node, where);
  NormalizerStep step;
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD" || type == "Lowercase") {
    r.allow_only(node, where, {"type"});
    step.kind = type == "NFC" ? Kind::kNfc : type == "NFD" ? Kind::kNfd : type == "NFKC" ? Kind::kNfkc
              : type == "NFKD" ? Kind::kNfkd : Kind::kLowercase;
  } else if (type == "Strip") {
    r.allow_only(node, where, {"type", "strip_left", "strip_right"});
    step.kind = Kind::kStrip;
    step.strip_left = r.bool_value(r.require(node, "strip_left", where), where + ".strip_left");
    step.strip_right = r.bool_value(r.require(node, "strip_right", where), where + ".strip_right");
  } else if (type == "Replace") {
    r.allow_only(node, where, {"type", "pattern", "content"});
    step.kind = Kind::kReplace;
    step.pattern = parse_pattern(r, r.require(node, "pattern", where), where + ".pattern", step.pattern_is_regex);
    step.content = r.string_value(r.require(node, "content", where), where + ".content");
  } else if (type == "Prepend") {
    r.allow_only(node, where, {"type", "prepend"});
    step.kind = Kind::kPrepend;
    step.content = r.string_value(r.require(node, "prepend", where), where + ".prepend");
  } else {
    r.error(where, cat("normalizer type '", type,
                       "' is not supported (NFC, NFD, NFKC, NFKD, Lowercase, Strip, Replace, Prepend, Sequence)"));
  }
  return step;
}

ordered_json normalizer_step_json(const NormalizerStep& step) {
  using Kind = NormalizerStep::Kind;
  ordered_json node;
  switch (step.kind) {
    case Kind::kNfc: node["type"] = "NFC"; break;
    case Kind::kNfd: node["type"] = "NFD"; break;
    case Kind::kNfkc: node["type"] = "NFKC"; break;
    case Kind::kNfkd: node["type"] = "NFKD"; break;
    case Kind::kLowercase: node["type"] = "Lowercase"; break;
    case Kind::kStrip:
      node["type"] = "Strip";
      node["strip_left"] = step.strip_left;
      node["strip_right"] = step.strip_right;
      break;
    case Kind::kReplace:
      node["type"] = "Replace";
      node["pattern"] = pattern_json(step.pattern, step.pattern_is_regex);
      node["content"] = step.content;
      break;
    case Kind::kPrepend:
      node["type"] = "Prepend";
      node["prepend"] = step.content;
      break;
  }
  return node;
}

// A component with a list of steps: null, one step, or a Sequence.
template <typename Spec, typename StepJson>
ordered_json steps_json(const Spec& spec, const char* list_field, StepJson step_json) {
  if (!spec.present) return nullptr;
  if (!spec.as_sequence && spec.steps.size() == 1) return step_json(spec.steps[0]);
  ordered_json list = ordered_json::array();
  for (const auto& step : spec.steps) list.push_back(step_json(step));
  ordered_json node;
  node["type"] = "Sequence";
  node[list_field] = std::move(list);
  return node;
}

// ---- pre-tokenizer -------------------------------------------------------------------------------

// The names tokenizer.json gives the values of an enum, and the two directions.
template <typename Enum>
using EnumNames = std::initializer_list<std::pair<Enum, const char*>>;

const EnumNames<SplitBehavior> kBehaviorNames = {
    {SplitBehavior::kRemoved, "Removed"}, {SplitBehavior::kIsolated, "Isolated"},
    {SplitBehavior::kMergedWithPrevious, "MergedWithPrevious"}, {SplitBehavior::kMergedWithNext, "MergedWithNext"},
    {SplitBehavior::kContiguous, "Contiguous"}};
const EnumNames<PrependScheme> kPrependSchemeNames = {
    {PrependScheme::kFirst, "first"}, {PrependScheme::kAlways, "always"}, {PrependScheme::kNever, "never"}};

template <typename Enum>
Enum parse_enum(const JsonReader& r, const json& value, const std::string& where, const EnumNames<Enum>& names,
                const char* what) {
  std::string name = r.string_value(value, where);
  std::string known;
  for (const auto& [member, spelling] : names) {
    if (name == spelling) return member;
    known += (known.empty() ? "" : ", ") + std::string(spelling);
  }
  r.error(where, cat("'", name, "' is not a ", what, " (", known, ")"));
}

template <typename Enum>
const char* enum_name(Enum value, const EnumNames<Enum>& names) {
  for (const auto& [member, spelling] : names) {
    if (member == value) return spelling;
  }
  return names.begin()->second;
}

// Metaspace's fields, shared by the pre-tokenizer and the decoder. Files of tokenizers before
// 0.15 have add_prefix_space instead of prepend_scheme (true: always, false: never) and no split.
void parse_metaspace(const JsonReader& r, const json& node, const std::string& where, std::string& replacement,
                     PrependScheme& scheme, bool& split) {
  r.allow_only(node, where, {"type", "replacement", "add_prefix_space", "prepend_scheme", "split", "str_rep"});
  replacement = r.string_value(r.require(node, "replacement", where), where + ".replacement");
  if (replacement.empty() || utf8_sequence_length(replacement, 0) != replacement.size()) {
    r.error(where + ".replacement", cat("'", replacement, "' is not one character"));
  }
  scheme = PrependScheme::kAlways;
  auto it = node.find("prepend_scheme");
  if (it != node.end() && !it->is_null()) scheme = parse_enum(r, *it, where + ".prepend_scheme", kPrependSchemeNames, "prepend scheme");
  // Hugging Face: a legacy add_prefix_space of false must come with prepend_scheme "never".
  auto legacy = node.find("add_prefix_space");
  if (legacy != node.end() && !legacy->is_null() && !r.bool_value(*legacy, where + ".add_prefix_space") &&
      scheme != PrependScheme::kNever) {
    r.error(where, "add_prefix_space false does not match prepend_scheme (set \"prepend_scheme\": \"never\")");
  }
  split = r.optional_bool(node, "split", true, where);
}

ordered_json metaspace_json(const std::string& replacement, PrependScheme scheme, bool split) {
  ordered_json node;
  node["type"] = "Metaspace";
  node["replacement"] = replacement;
  node["prepend_scheme"] = enum_name(scheme, kPrependSchemeNames);
  node["split"] = split;
  return node;
}

void byte_level_fields(const JsonReader& r, const json& node, const std::string& where, bool& add_prefix_space,
                       bool& trim_offsets, bool& use_regex) {
  r.allow_only(node, where, {"type", "add_prefix_space", "trim_offsets", "use_regex"});
  add_prefix_space = r.optional_bool(node, "add_prefix_space", true, where);
  trim_offsets = r.optional_bool(node, "trim_offsets", true, where);
  use_regex = r.optional_bool(node, "use_regex", true, where);
}

ordered_json byte_level_json(bool add_prefix_space, bool trim_offsets, bool use_regex) {
  ordered_json node;
  node["type"] = "ByteLevel";
  node["add_prefix_space"] = add_prefix_space;
  node["trim_offsets"] = trim_offsets;
  node["use_regex"] = use_regex;
  return node;
}

PreTokenizerStep parse_pre_tokenizer_step(const JsonReader& r, const json& node, const std::string& where) {
  using Kind = PreTokenizerStep::Kind;
  std::string type = r.type_of(node, where);
  PreTokenizerStep step;
  if (type == "Split") {
    r.allow_only(node, where, {"type", "pattern", "behavior", "invert"});
    step.kind = Kind::kSplit;
    bool is_regex = false;
    step.pattern.pattern = parse_pattern(r, r.require(node, "pattern", where), where + ".pattern", is_regex);
    step.pattern.is_literal = !is_regex;
    step.behavior = parse_enum(r, r.require(node, "behavior", where), where + ".behavior", kBehaviorNames, "split behavior");
    step.invert = r.optional_bool(node, "invert", false, where);
  } else if (type == "Digits") {
    r.allow_only(node, where, {"type", "individual_digits"});
    step.kind = Kind::kDigits;
    step.individual_digits = r.optional_bool(node, "individual_digits", false, where);
  } else if (type == "ByteLevel") {
    step.kind = Kind::kByteLevel;
    byte_level_fields(r, node, where, step.add_prefix_space, step.trim_offsets, step.use_regex);
  } else if (type == "Punctuation") {
    r.allow_only(node, where, {"type", "behavior"});
    step.kind = Kind::kPunctuation;
    auto it = node.find("behavior");
    step.behavior = it == node.end() ? SplitBehavior::kIsolated : parse_enum(r, *it, where + ".behavior", kBehaviorNames, "split behavior");
  } else if (type == "Whitespace" || type == "WhitespaceSplit") {
    r.allow_only(node, where, {"type"});
    step.kind = type == "Whitespace" ? Kind::kWhitespace : Kind::kWhitespaceSplit;
  } else if (type == "Metaspace") {
    step.kind = Kind::kMetaspace;
    parse_metaspace(r, node, where, step.replacement, step.prepend_scheme, step.split);
  } else {
    r.error(where, cat("pre-tokenizer type '", type,
                       "' is not supported (Split, Digits, ByteLevel, Punctuation, Whitespace, WhitespaceSplit, "
                       "Metaspace, Sequence)"));
  }
  return step;
}

ordered_json pre_tokenizer_step_json(const PreTokenizerStep& step) {
  using Kind = PreTokenizerStep::Kind;
  ordered_json node;
  switch (step.kind) {
    case Kind::kSplit:
      node["type"] = "Split";
      node["pattern"] = pattern_json(step.pattern.pattern, !step.pattern.is_literal);
      node["behavior"] = enum_name(step.behavior, kBehaviorNames);
      node["invert"] = step.invert;
      break;
    case Kind::kDigits:
      node["type"] = "Digits";
      node["individual_digits"] = step.individual_digits;
      break;
    case Kind::kByteLevel:
      return byte_level_json(step.add_prefix_space, step.trim_offsets, step.use_regex);
    case Kind::kPunctuation:
      node["type"] = "Punctuation";
      node["behavior"] = enum_name(step.behavior, kBehaviorNames);
      break;
    case Kind::kWhitespace: node["type"] = "Whitespace"; break;
    case Kind::kWhitespaceSplit: node["type"] = "WhitespaceSplit"; break;
    case Kind::kMetaspace:
      return metaspace_json(step.replacement, step.prepend_scheme, step.split);
  }
  return node;
}

// ---- post-processor ------------------------------------------------------------------------------

std::pair<std::string, int32_t> parse_token_pair(const JsonReader& r, const json& node, const std::string& where) {
  if (!node.is_array() || node.size() != 2) r.error(where, "expected [token, id]");
  return {r.string_value(node[0], where + "[0]"), r.id_value(node[1], where + "[1]")};
}

std::vector<TemplateItem> parse_template(const JsonReader& r, const json& list, const std::string& where) {
  if (!list.is_array()) r.error(where, "expected an array of {\"SpecialToken\"} / {\"Sequence\"} items");
  std::vector<TemplateItem> items;
  for (std::size_t i = 0; i < list.size(); ++i) {
    std::string w = cat(where, "[", i, "]");
    r.expect_object(list[i], w);
    if (list[i].size() != 1 || !(list[i].contains("SpecialToken") || list[i].contains("Sequence"))) {
      r.error(w, "expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
    }
    TemplateItem item;
    item.is_special = list[i].contains("SpecialToken");
    const json& body = item.is_special ? list[i]["SpecialToken"] : list[i]["Sequence"];
    std::string bw = w + (item.is_special ? ".SpecialToken" : ".Sequence");
    r.allow_only(body, bw, {"id", "type_id"});
    item.id = r.string_value(r.require(body, "id", bw), bw + ".id");
    item.type_id = uint32_t(r.id_value(r.require(body, "type_id", bw), bw + ".type_id"));
    items.push_back(std::move(item));
  }
  return items;
}

PostProcessorStep parse_post_processor_step(const JsonReader& r, const json& node, const std::string& where) {
  using Kind = PostProcessorStep::Kind;
  std::string type = r.type_of(node, where);
  PostProcessorStep step;
  if (type == "ByteLevel") {
    step.kind = Kind::kByteLevel;
    byte_level_fields(r, node, where, step.add_prefix_space, step.trim_offsets, step.use_regex);
  } else if (type == "TemplateProcessing") {
    r.allow_only(node, where, {"type", "single", "pair", "special_tokens"});
    step.kind = Kind::kTemplate;
    step.single = parse_template(r, r.require(node, "single", where), where + ".single");
    step.pair = parse_template(r, r.require(node, "pair", where), where + ".pair");
    const json& specials = r.require(node, "special_tokens", where);
    r.expect_object(specials, where + ".special_tokens");
    for (auto it = specials.begin(); it != specials.end(); ++it) {
      std::string w = cat(where, ".special_tokens['", it.key(), "']");
      r.allow_only(it.value(), w, {"id", "ids", "tokens"});
      TemplateSpecialToken token;
      token.id = r.string_value(r.require(it.value(), "id", w), w + ".id");
      if (token.id != it.key()) r.error(w + ".id", cat("'", token.id, "' differs from its key"));
      const json& ids = r.require(it.value(), "ids", w);
      const json& tokens = r.require(it.value(), "tokens", w);
      if (!ids.is_array() || !tokens.is_array()) r.error(w, "ids and tokens must be arrays");
      for (std::size_t i = 0; i < ids.size(); ++i) token.ids.push_back(r.id_value(ids[i], cat(w, ".ids[", i, "]")));
      for (std::size_t i = 0; i < tokens.size(); ++i) token.tokens.push_back(r.string_value(tokens[i], cat(w, ".tokens[", i, "]")));
      step.special_tokens.push_back(std::move(token));
    }
  } else if (type == "BertProcessing" || type == "RobertaProcessing") {
    bool roberta = type == "RobertaProcessing";
    if (roberta) r.allow_only(node, where, {"type", "sep", "cls", "trim_offsets", "add_prefix_space"});
    else r.allow_only(node, where, {"type", "sep", "cls"});
    step.kind = roberta ? Kind::kRoberta : Kind::kBert;
    std::tie(step.sep_token, step.sep_id) = parse_token_pair(r, r.require(node, "sep", where), where + ".sep");
    std::tie(step.cls_token, step.cls_id) = parse_token_pair(r, r.require(node, "cls", where), where + ".cls");
    if (roberta) {
      step.trim_offsets = r.optional_bool(node, "trim_offsets", true, where);
      step.add_prefix_space = r.optional_bool(node, "add_prefix_space", true, where);
    }
  } else {
    r.error(where, cat("post-processor type '", type,
                       "' is not supported (TemplateProcessing, ByteLevel, BertProcessing, RobertaProcessing, Sequence)"));
  }
  return step;
}

PostProcessorSpec parse_post_processor(const JsonReader& r, const json& node) {
  auto spec = parse_component<PostProcessorSpec>(r, node, "post_processor", "processors", parse_post_processor_step);
  try {
    validate_post_processor(spec);
  } catch (const Error& e) {
    r.error("post_processor", e.what());
  }
  return spec;
}

ordered_json template_json(const std::vector<TemplateItem>& items) {
  ordered_json list = ordered_json::array();
  for (const TemplateItem& item : items) {
    ordered_json body;
    body["id"] = item.id;
    body["type_id"] = item.type_id;
    ordered_json wrapper;
    wrapper[item.is_special ? "SpecialToken" : "Sequence"] = std::move(body);
    list.push_back(std::move(wrapper));
  }
  return list;
}

ordered_json post_processor_step_json(const PostProcessorStep& step) {
  using Kind = PostProcessorStep::Kind;
  ordered_json node;
  switch (step.kind) {
    case Kind::kByteLevel:
      return byte_level_json(step.add_prefix_space, step.trim_offsets, step.use_regex);
    case Kind::kTemplate: {
      node["type"] = "TemplateProcessing";
      node["single"] = template_json(step.single);
      node["pair"] = template_json(step.pair);
      ordered_json specials = ordered_json::object();
      for (const TemplateSpecialToken& token : step.special_tokens) {
        ordered_json t;
        t["id"] = token.id;
        t["ids"] = token.ids;
        t["tokens"] = token.tokens;
        specials[token.id] = std::move(t);
      }
      node["special_tokens"] = std::move(specials);
      break;
    }
    case Kind::kBert:
    case Kind::kRoberta:
      node["type"] = step.kind == Kind::kBert ? "BertProcessing" : "RobertaProcessing";
      node["sep"] = ordered_json::array({step.sep_token, step.sep_id});
      node["cls"] = ordered_json::array({step.cls_token, step.cls_id});
      if (step.kind == Kind::kRoberta) {
        node["trim_offsets"] = step.trim_offsets;
        node["add_prefix_space"] = step.add_prefix_space;
      }
      break;
  }
  return node;
}

// ---- decoder -------------------------------------------------------------------------------------

std::size_t count_value(const JsonReader& r, const json& value, const std::string& where) {
  if (!value.is_number_unsigned() && !(value.is_number_integer() && value.get<int64_t>() >= 0)) {
    r.error(where, cat("expected a non-negative integer, found ", value.type_name()));
  }
  return std::size_t(value.get<uint64_t>());
}

DecoderStep parse_decoder_step(const JsonReader& r, const json& node, const std::string& where) {
  using Kind = DecoderStep::Kind;
  std::string type = r.type_of(node, where);
  DecoderStep step;
  if (type == "ByteLevel") {
    step.kind = Kind::kByteLevel;
    byte_level_fields(r, node, where, step.add_prefix_space, step.trim_offsets, step.use_regex);
  } else if (type == "Replace") {
    r.allow_only(node, where, {"type", "pattern", "content"});
    step.kind = Kind::kReplace;
    step.pattern = parse_pattern(r, r.require(node, "pattern", where), where + ".pattern", step.pattern_is_regex);
    step.content = r.string_value(r.require(node, "content", where), where + ".content");
  } else if (type == "Strip") {
    r.allow_only(node, where, {"type", "content", "start", "stop"});
    step.kind = Kind::kStrip;
    step.content = r.string_value(r.require(node, "content", where), where + ".content");
    if (step.content.empty() || utf8_sequence_length(step.content, 0) != step.content.size()) {
      r.error(where + ".content", cat("'", step.content, "' is not one character"));
    }
    step.start = count_value(r, r.require(node, "start", where), where + ".start");
    step.stop = count_value(r, r.require(node, "stop", where), where + ".stop");
  } else if (type == "Fuse" || type == "ByteFallback") {
    r.allow_only(node, where, {"type"});
    step.kind = type == "Fuse" ? Kind::kFuse : Kind::kByteFallback;
  } else if (type == "Metaspace") {
    step.kind = Kind::kMetaspace;
    parse_metaspace(r, node, where, step.replacement, step.prepend_scheme, step.split);
  } else {
    r.error(where, cat("decoder type '", type,
                       "' is not supported (ByteLevel, Replace, Strip, Fuse, ByteFallback, Metaspace, Sequence)"));
  }
  return step;
}

ordered_json decoder_step_json(const DecoderStep& step) {
  using Kind = DecoderStep::Kind;
  ordered_json node;
  switch (step.kind) {
    case Kind::kByteLevel:
      return byte_level_json(step.add_prefix_space, step.trim_offsets, step.use_regex);
    case Kind::kReplace:
      node["type"] = "Replace";
      node["pattern"] = pattern_json(step.pattern, step.pattern_is_regex);
      node["content"] = step.content;
      break;
    case Kind::kStrip:
      node["type"] = "Strip";
      node["content"] = step.content;
      node["start"] = step.start;
      node["stop"] = step.stop;
      break;
    case Kind::kFuse: node["type"] = "Fuse"; break;
    case Kind::kByteFallback: node["type"] = "ByteFallback"; break;
    case Kind::kMetaspace:
      return metaspace_json(step.replacement, step.prepend_scheme, step.split);
  }
  return node;
}

// ---- added tokens and model ----------------------------------------------------------------------

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
    token.single_word = r.optional_bool(node, "single_word", false, where);
    token.lstrip = r.optional_bool(node, "lstrip", false, where);
    token.rstrip = r.optional_bool(node, "rstrip", false, where);
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

std::optional<std::string> optional_string(const JsonReader& r, const json& node, const char* key, const std::string& where) {
  auto it = node.find(key);
  if (it == node.end() || it->is_null()) return std::nullopt;
  return r.string_value(*it, cat(where, ".", key));
}

void parse_model(const JsonReader& r, const json& node, TokenizerSpec& spec) {
  const std::string where = "model";
  std::string type = r.type_of(node, where);
  if (type != "BPE") r.error(where, cat("type '", type, "' is not supported (only BPE)"));
  r.allow_only(node, where,
               {"type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
                "fuse_unk", "byte_fallback", "ignore_merges", "vocab", "merges"});
  r.require_null(node, "dropout", where, "BPE dropout is not supported");
  spec.continuing_subword_prefix = optional_string(r, node, "continuing_subword_prefix", where);
  spec.end_of_word_suffix = optional_string(r, node, "end_of_word_suffix", where);
  spec.byte_fallback = r.optional_bool(node, "byte_fallback", false, where);
  spec.fuse_unk = r.optional_bool(node, "fuse_unk", false, where);
  spec.ignore_merges = r.optional_bool(node, "ignore_merges", false, where);
  spec.unk_token = optional_string(r, node, "unk_token", where);

  const json& vocab = r.require(node, "vocab", where);
  r.expect_object(vocab, where + ".vocab");
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    spec.vocab.emplace_back(it.key(), r.id_value(it.value(), cat(where, ".vocab['", it.key(), "']")));
  }
  std::sort(spec.vocab.begin(), spec.vocab.end(), [](const auto& a, const auto& b) { return a.second < b.second; });

  const json& merges = r.require(node, "merges", where);
  if (!merges.is_array()) r.error(where + ".merges", "expected an array");
  spec.merges.reserve(merges.size());
  for (std::size_t i = 0; i < merges.size(); ++i) {
    // Hugging Face reads either all strings or all pairs, and skips "#version" lines of the
    // merges.txt format.
    if (merges[i].is_string() != merges[0].is_string()) r.error(cat(where, ".merges[", i, "]"), "mixes strings and pairs");
    if (merges[i].is_string() && merges[i].get<std::string>().rfind("#version", 0) == 0) continue;
    spec.merges.push_back(parse_merge(r, merges[i], i));
  }
}

ordered_json optional_json(const std::optional<std::string>& value) {
  return value ? ordered_json(*value) : ordered_json(nullptr);
}

// `with_tables`: false leaves out the vocabulary and the merges.
ordered_json model_json(const TokenizerSpec& spec, bool with_tables = true) {
  ordered_json model;
  model["type"] = "BPE";
  model["dropout"] = nullptr;
  model["unk_token"] = optional_json(spec.unk_token);
  model["continuing_subword_prefix"] = optional_json(spec.continuing_subword_prefix);
  model["end_of_word_suffix"] = optional_json(spec.end_of_word_suffix);
  model["fuse_unk"] = spec.fuse_unk;
  model["byte_fallback"] = spec.byte_fallback;
  // Written only when set: older Hugging Face releases do not know the field.
  if (spec.ignore_merges) model["ignore_merges"] = true;
  if (!with_tables) return model;
  std::vector<std::pair<std::string, int32_t>> vocab = spec.vocab;
  std::sort(vocab.begin(), vocab.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  ordered_json vocab_json = ordered_json::object();
  // Appended without ordered_map's per-key search, which made writing a 128k vocabulary
  // quadratic (12 s for DeepSeek-V3's); the keys are unique (the parser and Tokenizer check).
  auto& entries = vocab_json.get_ref<ordered_json::object_t&>();
  entries.reserve(vocab.size());
  for (const auto& [text, id] : vocab) entries.ordered_json::object_t::Container::emplace_back(text, ordered_json(id));
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
  auto version = root.find("version");
  if (version != root.end() && r.string_value(*version, "version") != "1.0") {
    r.error("version", cat("'", version->get<std::string>(), "' is not 1.0"));
  }
  r.require_null(root, "truncation", "top level", "truncation would cut encodings short");
  r.require_null(root, "padding", "top level", "padding would add tokens to encodings");
  TokenizerSpec spec;
  auto added = root.find("added_tokens");
  if (added != root.end() && !added->is_null()) spec.added_tokens = parse_added_tokens(r, *added);
  auto component = [&](const char* key) -> const json& {
    static const json null_value;
    auto it = root.find(key);
    return it == root.end() ? null_value : *it;
  };
  spec.normalizer = parse_component<NormalizerSpec>(r, component("normalizer"), "normalizer", "normalizers", parse_normalizer_step);
  spec.pre_tokenizer =
      parse_component<PreTokenizerSpec>(r, component("pre_tokenizer"), "pre_tokenizer", "pretokenizers",
                                        parse_pre_tokenizer_step);
  spec.post_processor = parse_post_processor(r, component("post_processor"));
  spec.decoder = parse_component<DecoderSpec>(r, component("decoder"), "decoder", "decoders", parse_decoder_step);
  parse_model(r, r.require(root, "model", "top level"), spec);
  return spec;
}

std::string step_type_name(const NormalizerStep& step) { return normalizer_step_json(step)["type"]; }
std::string step_type_name(const PreTokenizerStep& step) { return pre_tokenizer_step_json(step)["type"]; }
std::string step_type_name(const PostProcessorStep& step) { return post_processor_step_json(step)["type"]; }
std::string step_type_name(const DecoderStep& step) { return decoder_step_json(step)["type"]; }

std::string write_tokenizer_components_json(const TokenizerSpec& spec) {
  ordered_json root;
  root["normalizer"] = steps_json(spec.normalizer, "normalizers", normalizer_step_json);
  root["pre_tokenizer"] = steps_json(spec.pre_tokenizer, "pretokenizers", pre_tokenizer_step_json);
  root["post_processor"] = steps_json(spec.post_processor, "processors", post_processor_step_json);
  root["model"] = model_json(spec, false);
  return root.dump();
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
    node["single_word"] = token.single_word;
    node["lstrip"] = token.lstrip;
    node["rstrip"] = token.rstrip;
    node["normalized"] = token.normalized;
    node["special"] = token.special;
    added_json.push_back(std::move(node));
  }
  root["added_tokens"] = std::move(added_json);
  root["normalizer"] = steps_json(spec.normalizer, "normalizers", normalizer_step_json);
  root["pre_tokenizer"] = steps_json(spec.pre_tokenizer, "pretokenizers", pre_tokenizer_step_json);
  root["post_processor"] = steps_json(spec.post_processor, "processors", post_processor_step_json);
  root["decoder"] = steps_json(spec.decoder, "decoders", decoder_step_json);
  root["model"] = model_json(spec);
  return root.dump(2) + "\n";
}

}  // namespace nextn::tokenizer
