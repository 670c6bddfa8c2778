// GPT-2's byte-level alphabet: every byte 0..255 gets a printable Unicode character, so that BPE
// can work on bytes while vocabularies stay readable JSON strings. Bytes that are printable in
// Latin-1 (33..126, 161..172, 174..255) map to themselves; the other 68 map to U+0100.. in byte
// order (space 0x20 -> U+0120 'Ġ', newline 0x0A -> U+010A 'Ċ').
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nextn::tokenizer {

uint32_t byte_to_codepoint(uint8_t byte);
// The byte a character stands for; nullopt for characters outside the alphabet.
std::optional<uint8_t> codepoint_to_byte(uint32_t codepoint);

// Raw bytes -> UTF-8 text of their byte-level characters ("a b" -> "aĠb").
std::string bytes_to_byte_level(std::string_view bytes);
// The inverse; nullopt when `text` is not UTF-8 or has a character outside the alphabet.
std::optional<std::string> byte_level_to_bytes(std::string_view text);

}  // namespace nextn::tokenizer
