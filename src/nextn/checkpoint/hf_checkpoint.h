// A model directory in the Hugging Face DeepSeek-V3 layout: config.json beside safetensors
// weights (model.safetensors, or shards with model.safetensors.index.json) under the names of
// hf_tensor_map.h. Real checkpoints and tools read what nextn writes, and nextn reads theirs.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>

#include "nextn/checkpoint/hf_tensor_map.h"
#include "nextn/model/deepseek_v3.h"

namespace nextn {

struct SaveModelOptions {
  // On-disk dtype of the weights (the expert bias stays fp32); default: config.torch_dtype.
  std::optional<torch::ScalarType> dtype;
  uint64_t max_shard_bytes = 5ull << 30;  // HF's default shard size
  bool drop_mtp = false;                  // write the main model alone (num_nextn_predict_layers = 0)
  // An expert-parallel run's model holds a slice of each MoE layer's experts: the whole stacks,
  // gathered from the other ranks, are written instead (distributed/distributed_checkpoint.h).
  FullExperts full_experts;
};

// Writes dir/config.json and the weights; creates dir if needed. Each file is written atomically.
void save_model(DeepSeekV3Impl& model, const std::string& dir, const SaveModelOptions& options = {});

// Loads weights from dir into an existing model with the same config. Every tensor the model
// needs must be present with the right shape, and no other tensor may be there: errors name the
// tensor. Tensors are converted to the model's dtype (the expert bias stays fp32). The model's
// experts must not be sharded yet (load, then shard).
void load_weights(DeepSeekV3Impl& model, const std::string& dir);

// config.json + weights -> a model on `device`. When the directory has a checksums.json (every
// training checkpoint does), its files are first checked against it (SHA-256: about a second
// per GB here) unless verify_checksums is false; a mismatch is an error naming the files.
DeepSeekV3 load_model(const std::string& dir, torch::Device device = torch::kCPU, bool verify_checksums = true);

torch::ScalarType dtype_from_name(const std::string& name);  // float32 | bfloat16 | float16
std::string dtype_name(torch::ScalarType dtype);

}  // namespace nextn
