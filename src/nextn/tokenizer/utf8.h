// UTF-8 helpers that never throw on bad input: the tokenizer accepts ANY byte string, so these
// report invalid sequences instead of rejecting them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace nextn::tokenizer {

// Length (1..4) of the well-formed UTF-8 sequence that starts at text[pos], or 0 when the bytes
// there are not one (stray continuation byte, overlong form, surrogate, beyond U+10FFFF, cut off
// by the end of `text`).
std::size_t utf8_sequence_length(std::string_view text, std::size_t pos);

// Decodes the well-formed sequence at text[pos]; `length` receives 0 when there is none.
uint32_t utf8_decode(std::string_view text, std::size_t pos, std::size_t& length);

bool is_valid_utf8(std::string_view text);

// How many bytes at the end of `text` are the start of a multi-byte character that more bytes
// could still complete (0..3). Streaming decoders hold these back.
std::size_t utf8_incomplete_suffix(std::string_view text);

void append_utf8(std::string& out, uint32_t codepoint);

// The length a sequence led by `lead` would have (1..4), 0 for a byte that cannot lead.
std::size_t utf8_expected_length(uint8_t lead);
// Whether text[pos + index] (index >= 1) is a byte that can follow text[pos, pos + index) in
// some well-formed sequence.
bool utf8_continuation_fits(std::string_view text, std::size_t pos, std::size_t index);

}  // namespace nextn::tokenizer
