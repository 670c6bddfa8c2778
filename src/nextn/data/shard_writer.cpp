#include "nextn/data/shard_writer.h"

#include <filesystem>

#include "nextn/util/error.h"

namespace nextn::data {
namespace {

constexpr std::size_t kBufferBytes = std::size_t(1) << 20;

}  // namespace

ShardWriter::ShardWriter(const std::string& dir, const std::string& file_name, TokenDType dtype, int32_t vocab_size)
    : file_name_(file_name), dtype_(dtype), vocab_size_(vocab_size) {
  file_ = std::make_unique<io::AtomicFileWriter>((std::filesystem::path(dir) / file_name).string());
  buffer_.reserve(kBufferBytes);
  char header[kShardHeaderBytes];
  write_shard_header(header, dtype);
  write(header, sizeof(header));
}

void ShardWriter::flush_buffer() {
  if (buffer_.empty()) return;
  hash_.update(buffer_.data(), buffer_.size());
  file_->write(buffer_.data(), buffer_.size());
  buffer_.clear();
}

void ShardWriter::write(const void* data, std::size_t size) {
  if (buffer_.size() + size > kBufferBytes) flush_buffer();
  if (size >= kBufferBytes) {  // a huge document: no point copying it through the buffer
    hash_.update(data, size);
    file_->write(data, size);
    return;
  }
  const char* bytes = static_cast<const char*>(data);
  buffer_.insert(buffer_.end(), bytes, bytes + size);
}

void ShardWriter::append_document(const std::vector<int32_t>& tokens) {
  for (int32_t id : tokens) {
    NEXTN_CHECK(id >= 0 && id < vocab_size_, "token id ", id, " is outside the vocabulary (", vocab_size_, ")");
  }
  if (dtype_ == TokenDType::kUint16) {
    std::vector<uint16_t> narrow(tokens.begin(), tokens.end());
    write(narrow.data(), narrow.size() * sizeof(uint16_t));
  } else {
    write(tokens.data(), tokens.size() * sizeof(int32_t));  // non-negative: same bits as uint32
  }
  tokens_ += int64_t(tokens.size());
  ++documents_;
}

ShardInfo ShardWriter::finish() {
  flush_buffer();
  file_->commit();
  ShardInfo info;
  info.file = file_name_;
  info.tokens = tokens_;
  info.documents = documents_;
  info.sha256 = hash_.hex_digest();
  return info;
}

}  // namespace nextn::data
