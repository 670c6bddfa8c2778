// Pre-tokenisation: cutting text into pieces that BPE merges never cross. A pre-tokenizer is a
// sequence of Hugging Face `Split` steps with `Isolated` behaviour (every regex match and every
// gap between matches becomes a piece; each step splits the pieces of the previous one), then
// `ByteLevel`, which with use_regex=true first splits once more with GPT-2's regex.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace nextn::tokenizer {

class RegexPattern;

struct SplitPattern {
  std::string pattern;
  bool is_literal = false;  // HF {"String": ...} instead of {"Regex": ...}
  bool operator==(const SplitPattern& other) const {
    return pattern == other.pattern && is_literal == other.is_literal;
  }
};

struct PreTokenizerSpec {
  std::vector<SplitPattern> splits;
  bool byte_level_use_regex = false;
  bool operator==(const PreTokenizerSpec& other) const {
    return splits == other.splits && byte_level_use_regex == other.byte_level_use_regex;
  }
};

// GPT-2's pre-tokenisation regex, which HF ByteLevel(use_regex=true) applies.
extern const char* const kGpt2SplitPattern;

// DeepSeek-V3's: digits in runs of at most 3, CJK runs, then a GPT-style regex.
PreTokenizerSpec deepseek_v3_pre_tokenizer();
PreTokenizerSpec gpt2_pre_tokenizer();    // ByteLevel(use_regex=true) alone
PreTokenizerSpec simple_pre_tokenizer();  // the built-in scanner, see simple_split.h
// "deepseek-v3" | "gpt2" | "simple"; anything else is an error that lists the names.
PreTokenizerSpec pre_tokenizer_by_name(const std::string& name);
// The preset's name, or "custom".
std::string pre_tokenizer_name(const PreTokenizerSpec& spec);

class PreTokenizer {
 public:
  explicit PreTokenizer(PreTokenizerSpec spec);

  // Appends the pieces of `text` (views into it, in order, together covering all of it).
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;

  const PreTokenizerSpec& spec() const { return spec_; }
  bool all_regexes_jit_compiled() const;

 private:
  struct Step {
    std::shared_ptr<const RegexPattern> regex;  // null for the built-in scanner
  };
  void split_step(const Step& step, std::string_view piece, std::vector<std::string_view>& out) const;

  PreTokenizerSpec spec_;
  std::vector<Step> steps_;
};

}  // namespace nextn::tokenizer
