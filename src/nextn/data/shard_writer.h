// Writes one token shard, streaming: tokens go through a buffer into a temporary file that is
// renamed into place by finish() (an unfinished shard never appears under its name). The SHA-256
// of the file is computed on the way.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nextn/data/manifest.h"
#include "nextn/data/shard_format.h"
#include "nextn/io/atomic_file.h"
#include "nextn/util/sha256.h"

namespace nextn::data {

class ShardWriter {
 public:
  ShardWriter(const std::string& dir, const std::string& file_name, TokenDType dtype, int32_t vocab_size);

  // Appends one document's tokens (its EOS included) and counts the document.
  void append_document(const std::vector<int32_t>& tokens);
  int64_t num_tokens() const { return tokens_; }

  ShardInfo finish();

 private:
  void write(const void* data, std::size_t size);
  void flush_buffer();

  std::string file_name_;
  TokenDType dtype_;
  int32_t vocab_size_;
  std::unique_ptr<io::AtomicFileWriter> file_;
  Sha256 hash_;
  std::vector<char> buffer_;
  int64_t tokens_ = 0;
  int64_t documents_ = 0;
};

}  // namespace nextn::data
