// The token shard file: a 16-byte header, then the tokens as little-endian unsigned integers of
// 2 bytes (uint16, when every id fits) or 4 bytes (uint32). The header makes a shard
// recognisable on its own; the token count and checksum live in the manifest, so a truncated or
// altered shard is detected against it.
//   bytes 0-7   magic "NXTNTOKS"
//   bytes 8-11  format version (1), little-endian uint32
//   bytes 12-15 bytes per token (2 or 4), little-endian uint32
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "nextn/util/error.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "shards are little-endian and read by memcpy");

namespace nextn::data {

inline constexpr char kShardMagic[8] = {'N', 'X', 'T', 'N', 'T', 'O', 'K', 'S'};
inline constexpr uint32_t kShardVersion = 1;
inline constexpr std::size_t kShardHeaderBytes = 16;

enum class TokenDType { kUint16, kUint32 };

inline int bytes_per_token(TokenDType dtype) { return dtype == TokenDType::kUint16 ? 2 : 4; }
inline std::string to_string(TokenDType dtype) { return dtype == TokenDType::kUint16 ? "uint16" : "uint32"; }

inline TokenDType token_dtype_from_string(const std::string& name) {
  if (name == "uint16") return TokenDType::kUint16;
  if (name == "uint32") return TokenDType::kUint32;
  fail("unknown token dtype '", name, "' (uint16 or uint32)");
}

// The smallest type that holds every id of a vocabulary.
inline TokenDType token_dtype_for_vocab(int64_t vocab_size) {
  return vocab_size <= 65536 ? TokenDType::kUint16 : TokenDType::kUint32;
}

inline void write_shard_header(char* header, TokenDType dtype) {
  uint32_t version = kShardVersion;
  uint32_t width = uint32_t(bytes_per_token(dtype));
  std::memcpy(header, kShardMagic, 8);
  std::memcpy(header + 8, &version, 4);
  std::memcpy(header + 12, &width, 4);
}

}  // namespace nextn::data
