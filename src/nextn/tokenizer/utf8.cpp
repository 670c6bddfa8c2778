#include "nextn/tokenizer/utf8.h"

namespace nextn::tokenizer {
namespace {

bool is_continuation(uint8_t byte) { return (byte & 0xC0) == 0x80; }

// Expected total length of a sequence from its lead byte; 0 for bytes that cannot lead.
std::size_t lead_length(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// The allowed range of the second byte (RFC 3629 table), which rules out overlong forms,
// surrogates and code points above U+10FFFF.
bool second_byte_ok(uint8_t lead, uint8_t second) {
  switch (lead) {
    case 0xE0: return second >= 0xA0 && second <= 0xBF;
    case 0xED: return second >= 0x80 && second <= 0x9F;
    case 0xF0: return second >= 0x90 && second <= 0xBF;
    case 0xF4: return second >= 0x80 && second <= 0x8F;
    default: return is_continuation(second);
  }
}

}  // namespace

std::size_t utf8_expected_length(uint8_t lead) { return lead_length(lead); }

bool utf8_continuation_fits(std::string_view text, std::size_t pos, std::size_t index) {
  uint8_t byte = uint8_t(text[pos + index]);
  return index == 1 ? second_byte_ok(uint8_t(text[pos]), byte) : is_continuation(byte);
}

std::size_t utf8_sequence_length(std::string_view text, std::size_t pos) {
  if (pos >= text.size()) return 0;
  uint8_t lead = uint8_t(text[pos]);
  std::size_t length = lead_length(lead);
  if (length <= 1 || pos + length > text.size()) return length == 1 ? 1 : 0;
  if (!second_byte_ok(lead, uint8_t(text[pos + 1]))) return 0;
  for (std::size_t i = 2; i < length; ++i) {
    if (!is_continuation(uint8_t(text[pos + i]))) return 0;
  }
  return length;
}

uint32_t utf8_decode(std::string_view text, std::size_t pos, std::size_t& length) {
  length = utf8_sequence_length(text, pos);
  if (length == 0) return 0;
  uint8_t lead = uint8_t(text[pos]);
  if (length == 1) return lead;
  uint32_t codepoint = lead & (0x7F >> length);
  for (std::size_t i = 1; i < length; ++i) codepoint = (codepoint << 6) | (uint8_t(text[pos + i]) & 0x3F);
  return codepoint;
}

bool is_valid_utf8(std::string_view text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    // ASCII fast path: most of a source corpus is ASCII.
    if (uint8_t(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    std::size_t length = utf8_sequence_length(text, pos);
    if (length == 0) return false;
    pos += length;
  }
  return true;
}

std::size_t utf8_incomplete_suffix(std::string_view text) {
  // A character is at most 4 bytes, so only a lead byte among the last 3 can still be waiting.
  std::size_t n = text.size();
  for (std::size_t back = 1; back <= 3 && back <= n; ++back) {
    uint8_t byte = uint8_t(text[n - back]);
    if (is_continuation(byte)) continue;
    std::size_t expected = lead_length(byte);
    if (expected <= back) return 0;  // ASCII, an invalid lead, or an already complete character
    // The bytes present must be a valid beginning, or no continuation can fix them.
    if (back >= 2 && !second_byte_ok(byte, uint8_t(text[n - back + 1]))) return 0;
    return back;
  }
  return 0;
}

void append_utf8(std::string& out, uint32_t codepoint) {
  if (codepoint < 0x80) {
    out += char(codepoint);
  } else if (codepoint < 0x800) {
    out += char(0xC0 | (codepoint >> 6));
    out += char(0x80 | (codepoint & 0x3F));
  } else if (codepoint < 0x10000) {
    out += char(0xE0 | (codepoint >> 12));
    out += char(0x80 | ((codepoint >> 6) & 0x3F));
    out += char(0x80 | (codepoint & 0x3F));
  } else {
    out += char(0xF0 | (codepoint >> 18));
    out += char(0x80 | ((codepoint >> 12) & 0x3F));
    out += char(0x80 | ((codepoint >> 6) & 0x3F));
    out += char(0x80 | (codepoint & 0x3F));
  }
}

}  // namespace nextn::tokenizer
