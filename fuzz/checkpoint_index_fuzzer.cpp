// model.safetensors.index.json beside two real shards: the index names shard files and tensors.
#include <torch/torch.h>

#include "fuzz_support.h"
#include "nextn/io/checkpoint_shards.h"
#include "nextn/io/safetensors.h"

namespace {

const std::string& checkpoint_dir() {
  static const std::string dir = [] {
    const std::string d = nextn::fuzz::scratch_dir() + "/checkpoint";
    std::filesystem::create_directories(d);
    nextn::io::write_safetensors(d + "/model-00001-of-00002.safetensors", {{"a", torch::arange(6).view({2, 3})}});
    nextn::io::write_safetensors(d + "/model-00002-of-00002.safetensors",
                                 {{"b", torch::ones({4}, torch::kFloat)}, {"c", torch::zeros({1}, torch::kBFloat16)}});
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string dir = checkpoint_dir();
  {
    std::ofstream out(dir + "/model.safetensors.index.json", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  nextn::fuzz::expect_clean_refusal([&] {
    nextn::io::CheckpointShards shards(dir);
    for (const auto& name : shards.names()) shards.read(name);
  });
  return 0;
}
