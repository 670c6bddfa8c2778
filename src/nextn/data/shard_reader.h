// A token shard opened for reading: memory-mapped (read-only), so a dataset of any size costs
// only address space, and checked against its manifest entry when opened: size (a truncated file
// is named as such), header, and, unless skipped, the SHA-256 and the range of every token.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "nextn/data/manifest.h"
#include "nextn/data/shard_format.h"

namespace nextn::data {

class TokenShard {
 public:
  TokenShard(const std::string& path, const ShardInfo& info, TokenDType dtype, int32_t vocab_size,
             bool verify_contents);

  int64_t size() const { return size_; }
  int32_t token(int64_t index) const {
    return width_ == 2 ? int32_t(reinterpret_cast<const uint16_t*>(tokens_)[index])
                       : int32_t(reinterpret_cast<const uint32_t*>(tokens_)[index]);
  }
  // tokens [start, start + count) as int64, for tensors.
  void copy_to(int64_t start, int64_t count, int64_t* out) const;
  const std::string& path() const { return path_; }

  struct Mapping;  // implementation detail (shard_reader.cpp)

 private:
  std::shared_ptr<const Mapping> mapping_;  // shared by copies; unmapped with the last one
  const char* tokens_ = nullptr;
  int64_t size_ = 0;
  int width_ = 2;
  std::string path_;
};

}  // namespace nextn::data
