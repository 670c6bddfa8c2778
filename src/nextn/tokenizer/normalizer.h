// Normalizers of a tokenizer.json (Hugging Face `normalizers`): text -> text before
// pre-tokenisation. Supported: NFC, NFD, NFKC, NFKD, Lowercase, Strip, Replace, Prepend and a
// Sequence of them; the loader refuses any other type by name.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace nextn::tokenizer {

class RegexPattern;

struct NormalizerStep {
  enum class Kind { kNfc, kNfd, kNfkc, kNfkd, kLowercase, kStrip, kReplace, kPrepend };
  Kind kind = Kind::kNfc;
  bool strip_left = false;   // Strip
  bool strip_right = false;
  std::string pattern;       // Replace: a literal ({"String": ...}) or a regex ({"Regex": ...})
  bool pattern_is_regex = false;
  std::string content;       // Replace: the replacement; Prepend: the prefix
  bool operator==(const NormalizerStep& other) const {
    return kind == other.kind && strip_left == other.strip_left && strip_right == other.strip_right &&
           pattern == other.pattern && pattern_is_regex == other.pattern_is_regex && content == other.content;
  }
};

struct NormalizerSpec {
  bool present = false;       // false: "normalizer": null
  bool as_sequence = false;   // written as {"type": "Sequence", "normalizers": [...]}
  std::vector<NormalizerStep> steps;
  bool operator==(const NormalizerSpec& other) const {
    return present == other.present && as_sequence == other.as_sequence && steps == other.steps;
  }
};

class Normalizer {
 public:
  Normalizer() = default;
  explicit Normalizer(const NormalizerSpec& spec);
  bool identity() const { return steps_.empty(); }
  // `keeps_start`, when given, is set to whether the result still begins at the text's first
  // character (false when a step removed it: Strip, or a Replace by nothing at the start), which
  // Hugging Face's Metaspace "first" scheme asks of the original offsets.
  std::string normalize(std::string_view text, bool* keeps_start = nullptr) const;

 private:
  struct Step {
    NormalizerStep spec;
    std::shared_ptr<const RegexPattern> regex;
  };
  static bool removes_first_character(const Step& step, std::string_view text);
  std::vector<Step> steps_;
};

// Replaces every non-overlapping match of `regex` (or occurrence of `literal`), left to right.
std::string replace_all_literal(std::string_view text, std::string_view literal, std::string_view content);
std::string replace_all_regex(std::string_view text, const RegexPattern& regex, std::string_view content);

}  // namespace nextn::tokenizer
