#include "nextn/tokenizer/unicode.h"

#include <utf8proc.h>

#include <cstdlib>

#include "nextn/tokenizer/utf8.h"
#include "nextn/util/error.h"

namespace nextn::tokenizer {
namespace {

constexpr uint32_t kInvalid = UINT32_MAX;

utf8proc_category_t category(uint32_t c) {
  if (c > 0x10FFFF) return UTF8PROC_CATEGORY_CN;
  return utf8proc_category(utf8proc_int32_t(c));
}

bool is_alphabetic(uint32_t c) {
  // Alphabetic = Lu Ll Lt Lm Lo Nl + Other_Alphabetic. utf8proc has no Other_Alphabetic, whose
  // members are mostly spacing and non-spacing vowel signs (combining class 0, unlike accents):
  // approximated by that. Only single_word matching of added tokens asks.
  switch (category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL:
      return true;
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC:
      return utf8proc_get_property(utf8proc_int32_t(c))->combining_class == 0;
    default:
      return false;
  }
}

}  // namespace

bool CharCursor::next(uint32_t& codepoint, std::size_t& length) {
  if (pos >= text.size()) return false;
  codepoint = utf8_decode(text, pos, length);
  if (length == 0) {
    codepoint = kInvalid;
    length = 1;
  }
  pos += length;
  return true;
}

bool is_whitespace_char(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

bool is_numeric_char(uint32_t c) {
  utf8proc_category_t cat = category(c);
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

bool is_alphanumeric_char(uint32_t c) { return is_alphabetic(c) || is_numeric_char(c); }

bool is_regex_word_char(uint32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  if (c == 0x200C || c == 0x200D) return true;
  switch (category(c)) {
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return is_alphabetic(c);
  }
}

bool is_punctuation_char(uint32_t c) {
  if (c < 0x80) return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
  switch (category(c)) {
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS: case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF: case UTF8PROC_CATEGORY_PO:
      return true;
    default:
      return false;
  }
}

namespace {

std::string normalize_valid_run(std::string_view run, NormalForm form) {
  int options = UTF8PROC_STABLE;
  switch (form) {
    case NormalForm::kNfc: options |= UTF8PROC_COMPOSE; break;
    case NormalForm::kNfd: options |= UTF8PROC_DECOMPOSE; break;
    case NormalForm::kNfkc: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case NormalForm::kNfkd: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  utf8proc_uint8_t* out = nullptr;
  utf8proc_ssize_t length = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(run.data()),
                                         utf8proc_ssize_t(run.size()), &out, utf8proc_option_t(options));
  NEXTN_CHECK(length >= 0, "Unicode normalization failed: ", utf8proc_errmsg(length));
  std::string result(reinterpret_cast<const char*>(out), std::size_t(length));
  std::free(out);
  return result;
}

bool all_ascii(std::string_view text) {
  for (char c : text) {
    if (uint8_t(c) >= 0x80) return false;
  }
  return true;
}

}  // namespace

std::string normalize_unicode(std::string_view text, NormalForm form) {
  if (all_ascii(text)) return std::string(text);  // ASCII is invariant under all four forms
  std::string out;
  std::size_t run_start = 0, pos = 0;
  while (pos < text.size()) {
    std::size_t length = utf8_sequence_length(text, pos);
    if (length > 0) {
      pos += length;
      continue;
    }
    if (pos > run_start) out += normalize_valid_run(text.substr(run_start, pos - run_start), form);
    out += text[pos];
    run_start = ++pos;
  }
  if (pos > run_start) out += normalize_valid_run(text.substr(run_start, pos - run_start), form);
  return out;
}

std::string lowercase_unicode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  CharCursor cursor{text};
  uint32_t c = 0;
  std::size_t length = 0;
  while (cursor.next(c, length)) {
    if (c == kInvalid) {
      out += text[cursor.pos - 1];
    } else if (c < 0x80) {
      out += char(c >= 'A' && c <= 'Z' ? c + 32 : c);
    } else if (c == 0x130) {
      // The one character whose unconditional lowercase mapping is two characters
      // (SpecialCasing.txt): İ -> i + COMBINING DOT ABOVE.
      out += "i\xCC\x87";
    } else {
      append_utf8(out, uint32_t(utf8proc_tolower(utf8proc_int32_t(c))));
    }
  }
  return out;
}

std::string to_valid_utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    std::size_t length = utf8_sequence_length(bytes, pos);
    if (length > 0) {
      out.append(bytes.substr(pos, length));
      pos += length;
      continue;
    }
    // The maximal subpart (Unicode 3.9, the U+FFFD substitution practice): a lead byte and the
    // continuation bytes that could still complete it become one replacement character.
    std::size_t subpart = 1;
    std::size_t expected = utf8_expected_length(uint8_t(bytes[pos]));
    while (subpart < expected && pos + subpart < bytes.size() &&
           utf8_continuation_fits(bytes, pos, subpart)) {
      ++subpart;
    }
    out += "\xEF\xBF\xBD";
    pos += subpart;
  }
  return out;
}

}  // namespace nextn::tokenizer
