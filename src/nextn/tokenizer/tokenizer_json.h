// Reading and writing Hugging Face tokenizer.json files. Supported: model BPE (merges as "a b"
// strings or [a, b] pairs, ignore_merges), pre_tokenizer ByteLevel or a Sequence of Split
// (Isolated, not inverted, Regex or String pattern) steps ending in ByteLevel, decoder ByteLevel,
// post_processor ByteLevel or null, normalizer null or an empty Sequence, added_tokens without
// lstrip/rstrip/single_word. Anything else is an error that names the field and the value.
#pragma once

#include <string>
#include <string_view>

#include "nextn/tokenizer/tokenizer.h"

namespace nextn::tokenizer {

// `source_name` (usually the path) prefixes every error message.
TokenizerSpec parse_tokenizer_json(std::string_view json_text, const std::string& source_name);

// Deterministic output: the same spec always gives the same bytes (vocabulary in id order).
std::string write_tokenizer_json(const TokenizerSpec& spec);

}  // namespace nextn::tokenizer
