// A safetensors file: header (length, JSON, dtypes, shapes, offsets) and every tensor's bytes.
#include "fuzz_support.h"
#include "nextn/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = nextn::fuzz::write_scratch_file("input.safetensors", data, size);
  nextn::fuzz::expect_clean_refusal([&] {
    nextn::io::SafetensorsReader reader(path);
    for (const auto& entry : reader.entries()) {
      nextn::fuzz::expect_clean_refusal([&] { reader.read(entry.name); });
    }
  });
  return 0;
}
