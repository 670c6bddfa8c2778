// A token shard file (header, then uint16/uint32 tokens) opened against a manifest entry that
// matches its hash, so that the checks after the hash (header, size, every token's range) run.
// The first input byte picks the dtype and vocabulary size; the rest is the file.
#include "fuzz_support.h"
#include "nextn/data/shard_reader.h"
#include "nextn/util/sha256.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const auto dtype = (data[0] & 1) ? nextn::data::TokenDType::kUint32 : nextn::data::TokenDType::kUint16;
  const int32_t vocab_size = 2 + (data[0] >> 1) * 517;
  const std::string path = nextn::fuzz::write_scratch_file("train-00000.bin", data + 1, size - 1);
  nextn::data::ShardInfo info;
  info.file = "train-00000.bin";
  info.sha256 = nextn::sha256_hex(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  const int64_t width = nextn::data::bytes_per_token(dtype);
  info.tokens = size - 1 >= static_cast<size_t>(nextn::data::kShardHeaderBytes)
                    ? static_cast<int64_t>(size - 1 - nextn::data::kShardHeaderBytes) / width
                    : 0;
  info.documents = 1;
  nextn::fuzz::expect_clean_refusal([&] {
    nextn::data::TokenShard shard(path, info, dtype, vocab_size, /*verify_contents=*/true);
    for (int64_t i = 0; i < shard.size(); ++i) {
      if (shard.token(i) < 0 || shard.token(i) >= vocab_size) std::abort();  // verified: in range
    }
  });
  return 0;
}
