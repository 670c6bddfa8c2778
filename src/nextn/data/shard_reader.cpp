#include "nextn/data/shard_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "nextn/util/error.h"
#include "nextn/util/sha256.h"

namespace nextn::data {

struct TokenShard::Mapping {
  void* data = nullptr;
  std::size_t bytes = 0;
  ~Mapping() {
    if (data) ::munmap(data, bytes);
  }
};

namespace {

std::shared_ptr<TokenShard::Mapping> map_file(const std::string& path, std::size_t& file_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  NEXTN_CHECK(fd >= 0, "cannot open shard '", path, "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int saved = errno;
    ::close(fd);
    fail("cannot stat shard '", path, "': ", std::strerror(saved));
  }
  file_bytes = std::size_t(st.st_size);
  auto mapping = std::make_shared<TokenShard::Mapping>();
  if (file_bytes > 0) {
    void* data = ::mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    int saved = errno;
    ::close(fd);
    NEXTN_CHECK(data != MAP_FAILED, "cannot map shard '", path, "': ", std::strerror(saved));
    mapping->data = data;
    mapping->bytes = file_bytes;
  } else {
    ::close(fd);
  }
  return mapping;
}

}  // namespace

TokenShard::TokenShard(const std::string& path, const ShardInfo& info, TokenDType dtype, int32_t vocab_size,
                       bool verify_contents)
    : width_(bytes_per_token(dtype)), path_(path) {
  std::size_t file_bytes = 0;
  auto mapping = map_file(path, file_bytes);
  const std::size_t expected = kShardHeaderBytes + std::size_t(info.tokens) * std::size_t(width_);
  if (file_bytes < expected) {
    fail("shard '", path, "' is truncated: ", file_bytes, " bytes, the manifest's ", info.tokens, " ",
         to_string(dtype), " tokens need ", expected);
  }
  NEXTN_CHECK(file_bytes == expected, "shard '", path, "' has ", file_bytes, " bytes, the manifest's ",
              info.tokens, " ", to_string(dtype), " tokens need ", expected);
  const char* bytes = static_cast<const char*>(mapping->data);
  char header[kShardHeaderBytes];
  write_shard_header(header, dtype);
  NEXTN_CHECK(std::memcmp(bytes, header, kShardHeaderBytes) == 0, "shard '", path,
              "' has a wrong header (not a nextn ", to_string(dtype), " token shard, version ", kShardVersion, ")");
  tokens_ = bytes + kShardHeaderBytes;
  size_ = info.tokens;
  if (verify_contents) {
    Sha256 hash;
    hash.update(bytes, file_bytes);
    std::string digest = hash.hex_digest();
    NEXTN_CHECK(digest == info.sha256, "shard '", path, "' is corrupted: its SHA-256 is ", digest,
                ", the manifest says ", info.sha256);
    for (int64_t i = 0; i < size_; ++i) {
      // A uint32 token of 2^31 or more reads as a negative int32: refused like any id past the vocabulary.
      const int64_t id = width_ == 2 ? int64_t(reinterpret_cast<const uint16_t*>(tokens_)[i])
                                     : int64_t(reinterpret_cast<const uint32_t*>(tokens_)[i]);
      NEXTN_CHECK(id < vocab_size, "shard '", path, "' holds token id ", id, " at ", i,
                  ", outside the vocabulary of ", vocab_size);
    }
  }
  mapping_ = std::move(mapping);
}

void TokenShard::copy_to(int64_t start, int64_t count, int64_t* out) const {
  if (width_ == 2) {
    const uint16_t* source = reinterpret_cast<const uint16_t*>(tokens_) + start;
    for (int64_t i = 0; i < count; ++i) out[i] = source[i];
  } else {
    const uint32_t* source = reinterpret_cast<const uint32_t*>(tokens_) + start;
    for (int64_t i = 0; i < count; ++i) out[i] = source[i];
  }
}

}  // namespace nextn::data
