#include "nextn/tokenizer/byte_level.h"

#include <array>

#include "nextn/tokenizer/utf8.h"

namespace nextn::tokenizer {
namespace {

bool maps_to_itself(int byte) {
  return (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || (byte >= 174 && byte <= 255);
}

struct ByteLevelTables {
  std::array<uint32_t, 256> codepoint_of_byte{};
  std::array<std::string, 256> utf8_of_byte;
  // Every character of the alphabet is below U+0144 (256 + 68).
  std::array<int16_t, 512> byte_of_codepoint{};

  ByteLevelTables() {
    byte_of_codepoint.fill(-1);
    uint32_t next_shifted = 256;
    for (int byte = 0; byte < 256; ++byte) {
      uint32_t codepoint = maps_to_itself(byte) ? uint32_t(byte) : next_shifted++;
      codepoint_of_byte[byte] = codepoint;
      byte_of_codepoint[codepoint] = int16_t(byte);
      append_utf8(utf8_of_byte[byte], codepoint);
    }
  }
};

const ByteLevelTables& tables() {
  static const ByteLevelTables instance;
  return instance;
}

}  // namespace

uint32_t byte_to_codepoint(uint8_t byte) { return tables().codepoint_of_byte[byte]; }

std::optional<uint8_t> codepoint_to_byte(uint32_t codepoint) {
  if (codepoint >= tables().byte_of_codepoint.size()) return std::nullopt;
  int16_t byte = tables().byte_of_codepoint[codepoint];
  if (byte < 0) return std::nullopt;
  return uint8_t(byte);
}

std::string bytes_to_byte_level(std::string_view bytes) {
  const ByteLevelTables& t = tables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += t.utf8_of_byte[uint8_t(c)];
  return out;
}

std::optional<std::string> byte_level_to_bytes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t length = 0;
    uint32_t codepoint = utf8_decode(text, pos, length);
    if (length == 0) return std::nullopt;
    std::optional<uint8_t> byte = codepoint_to_byte(codepoint);
    if (!byte) return std::nullopt;
    out += char(*byte);
    pos += length;
  }
  return out;
}

}  // namespace nextn::tokenizer
