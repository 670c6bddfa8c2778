// Pre-tokenisation: cutting (normalized) text into the pieces that BPE merges never cross, as
// Hugging Face's pre-tokenizers do. A pre-tokenizer is a list of steps, each applied to every
// piece the previous steps made: Split (a regex or a literal, five ways of treating the matches,
// optionally inverted), Digits, Punctuation, Whitespace, WhitespaceSplit, Metaspace and ByteLevel.
//
// ByteLevel maps every byte to a printable character of GPT-2's alphabet (byte_level.h). When it
// is the last step, the mapping is left to the BPE model, which then starts from the raw bytes
// of each piece (one symbol per byte, the same thing, much faster): defers_byte_level().
#pragma once

#include <deque>
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

// What a split does with the matches (Hugging Face's SplitDelimiterBehavior).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
// When Metaspace puts its replacement character in front of a piece.
enum class PrependScheme { kFirst, kAlways, kNever };

struct PreTokenizerStep {
  enum class Kind { kSplit, kDigits, kPunctuation, kWhitespace, kWhitespaceSplit, kMetaspace, kByteLevel };
  Kind kind = Kind::kSplit;
  SplitPattern pattern;                               // Split
  SplitBehavior behavior = SplitBehavior::kIsolated;  // Split, Punctuation
  bool invert = false;                                // Split
  bool individual_digits = false;                     // Digits
  bool add_prefix_space = false;                      // ByteLevel
  bool trim_offsets = true;                           // ByteLevel (changes offsets only)
  bool use_regex = true;                              // ByteLevel: split with GPT-2's regex first
  std::string replacement = "\xE2\x96\x81";           // Metaspace: U+2581
  PrependScheme prepend_scheme = PrependScheme::kAlways;
  bool split = true;                                  // Metaspace
  bool operator==(const PreTokenizerStep& other) const;
};

struct PreTokenizerSpec {
  bool present = true;      // false: "pre_tokenizer": null (all text is one piece)
  bool as_sequence = true;  // written as a Sequence even when it has one step
  std::vector<PreTokenizerStep> steps;
  bool operator==(const PreTokenizerSpec& other) const {
    return present == other.present && as_sequence == other.as_sequence && steps == other.steps;
  }
  // The form every nextn release before tokenizer.json conformance wrote: Isolated Splits, then
  // one ByteLevel without a prefix space. Its content hash stays what it was.
  bool is_split_then_byte_level() const;
};

PreTokenizerStep split_step(std::string pattern, bool is_literal = false,
                            SplitBehavior behavior = SplitBehavior::kIsolated);
PreTokenizerStep byte_level_step(bool use_regex);

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

// Owns the text that steps create (a prefix space, Metaspace's replacement, the byte-level
// alphabet when it is not deferred); pieces may point into it. Addresses stay valid until clear().
class PieceArena {
 public:
  std::string_view keep(std::string text);
  void clear() { strings_.clear(); }

 private:
  std::deque<std::string> strings_;
};

class PreTokenizer {
 public:
  explicit PreTokenizer(PreTokenizerSpec spec);

  // Appends the pieces of `text`, in order. `at_input_start`: `text` begins the whole input
  // (Metaspace's "first" scheme prepends only there). Pieces are views into `text` or `arena`;
  // without an arena, a pre-tokenizer that must create text is an error.
  void split(std::string_view text, std::vector<std::string_view>& pieces, PieceArena* arena = nullptr,
             bool at_input_start = true) const;

  // True when the last step is ByteLevel: pieces are raw bytes, to be read as byte-level symbols.
  bool defers_byte_level() const { return defers_byte_level_; }
  const PreTokenizerSpec& spec() const { return spec_; }
  bool all_regexes_jit_compiled() const;

  struct Piece {
    std::string_view text;
    bool at_input_start = false;
  };

 private:
  struct Step {
    PreTokenizerStep spec;
    std::shared_ptr<const RegexPattern> regex;  // Split, Whitespace, ByteLevel with use_regex
    bool builtin_scanner = false;               // the simple preset's regex, by simple_split.h
    bool map_bytes = false;                     // ByteLevel that is not deferred
  };
  void apply(const Step& step, const Piece& piece, std::vector<Piece>& out, PieceArena* arena) const;

  PreTokenizerSpec spec_;
  std::vector<Step> steps_;
  bool defers_byte_level_ = false;
};

}  // namespace nextn::tokenizer
