// Decoders of a tokenizer.json: token strings -> text (Hugging Face's decode_chain, then the
// pieces joined). Supported: ByteLevel, Replace, Strip, Fuse, ByteFallback, Metaspace and a
// Sequence of them; without a decoder, tokens are joined with spaces, as Hugging Face does.
//
// ByteLevel yields bytes. Hugging Face turns them into a string at once (invalid UTF-8 becomes
// U+FFFD); nextn does the same when more decoders follow, but keeps the bytes when ByteLevel is
// last, so that decode(encode(x)) == x for any bytes. to_valid_utf8_lossy gives HF's string.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nextn/tokenizer/pretokenizer.h"

namespace nextn::tokenizer {

class RegexPattern;

struct DecoderStep {
  enum class Kind { kByteLevel, kReplace, kStrip, kFuse, kByteFallback, kMetaspace };
  Kind kind = Kind::kByteLevel;
  bool add_prefix_space = true;  // ByteLevel: kept for the file's sake, no effect on decoding
  bool trim_offsets = true;
  bool use_regex = true;
  std::string pattern;           // Replace
  bool pattern_is_regex = false;
  std::string content;           // Replace: the replacement; Strip: the character stripped
  std::size_t start = 0;         // Strip: at most this many from the start
  std::size_t stop = 0;          // Strip: at most this many from the end
  std::string replacement = "\xE2\x96\x81";  // Metaspace
  PrependScheme prepend_scheme = PrependScheme::kAlways;
  bool split = true;
  bool operator==(const DecoderStep& o) const {
    return kind == o.kind && add_prefix_space == o.add_prefix_space && trim_offsets == o.trim_offsets &&
           use_regex == o.use_regex && pattern == o.pattern && pattern_is_regex == o.pattern_is_regex &&
           content == o.content && start == o.start && stop == o.stop && replacement == o.replacement &&
           prepend_scheme == o.prepend_scheme && split == o.split;
  }
};

struct DecoderSpec {
  bool present = false;
  bool as_sequence = false;
  std::vector<DecoderStep> steps;
  bool operator==(const DecoderSpec& o) const {
    return present == o.present && as_sequence == o.as_sequence && steps == o.steps;
  }
  // Exactly one ByteLevel decoder: every token decodes to bytes of its own.
  bool is_byte_level() const { return present && steps.size() == 1 && steps[0].kind == DecoderStep::Kind::kByteLevel; }
};

class Decoder {
 public:
  Decoder() = default;
  explicit Decoder(const DecoderSpec& spec);
  std::string decode(std::vector<std::string> tokens) const;

 private:
  struct Step {
    DecoderStep spec;
    std::shared_ptr<const RegexPattern> regex;
  };
  std::vector<Step> steps_;
  bool present_ = false;
};

// A token's bytes under the ByteLevel decoder: its characters mapped back to bytes when all are
// in the byte-level alphabet, else its text as it is.
std::string byte_level_token_bytes(const std::string& token);

}  // namespace nextn::tokenizer
