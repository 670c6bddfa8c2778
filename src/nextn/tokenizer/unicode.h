// Character classes and transformations of Unicode text, as Rust's `char` methods define them
// (Hugging Face tokenizers is Rust; its normalizers and pre-tokenizers call these), on top of
// utf8proc's Unicode tables. Text that is not valid UTF-8 is handled byte by byte: invalid bytes
// belong to no class and pass through every transformation unchanged.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace nextn::tokenizer {

bool is_whitespace_char(uint32_t c);    // char::is_whitespace: the White_Space property
bool is_numeric_char(uint32_t c);       // char::is_numeric: general categories Nd, Nl, No
bool is_alphanumeric_char(uint32_t c);  // char::is_alphanumeric: Alphabetic or numeric
// \w of Rust's regex crate: Alphabetic, marks, decimal digits, connector punctuation, U+200C/D.
bool is_regex_word_char(uint32_t c);
// Hugging Face's is_punc: ASCII punctuation (which includes $ + < = > ^ ` | ~) or any of the
// Unicode punctuation categories Pc Pd Ps Pe Pi Pf Po.
bool is_punctuation_char(uint32_t c);

enum class NormalForm { kNfc, kNfd, kNfkc, kNfkd };
// Normalizes every maximal run of valid UTF-8; invalid bytes stay where they are.
std::string normalize_unicode(std::string_view text, NormalForm form);
// Each character replaced by its full lowercase mapping, one character at a time (Rust's
// char::to_lowercase, no context: a final sigma stays σ).
std::string lowercase_unicode(std::string_view text);

// Rust's String::from_utf8_lossy: each maximal invalid subsequence becomes one U+FFFD.
std::string to_valid_utf8_lossy(std::string_view bytes);

// Walks `text` one character (or one invalid byte, codepoint = UINT32_MAX) at a time.
struct CharCursor {
  std::string_view text;
  std::size_t pos = 0;
  bool next(uint32_t& codepoint, std::size_t& length);
};

}  // namespace nextn::tokenizer
