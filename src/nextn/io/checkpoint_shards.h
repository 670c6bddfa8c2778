// Hugging Face checkpoint directories: one `model.safetensors`, or shards
// `model-00001-of-0000N.safetensors` plus `model.safetensors.index.json`:
//   {"metadata": {"total_size": <sum of tensor bytes>}, "weight_map": {"<tensor>": "<shard file>"}}
// (the layout transformers' save_pretrained writes and from_pretrained reads).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "nextn/io/safetensors.h"

namespace nextn::io {

inline constexpr const char* kSingleCheckpointFile = "model.safetensors";
inline constexpr const char* kCheckpointIndexFile = "model.safetensors.index.json";

// "model-00002-of-00005.safetensors" for shard 2 (counting from 1) of 5.
std::string checkpoint_shard_file_name(size_t shard_number, size_t shard_count);
// Whether `name` has the form HF gives shards: "model-<5+ digits>-of-<5+ digits>.safetensors".
bool is_checkpoint_shard_file_name(const std::string& name);

// Writes `tensors` into `dir` (created if missing). If their bytes sum to at most
// `max_shard_bytes`, everything goes to dir/model.safetensors; otherwise into shards of at most
// `max_shard_bytes` tensor bytes each (headers not counted, as in transformers), filled in the
// given order, plus the index. A tensor larger than the limit gets a shard of its own.
// Every file carries `metadata` plus "format": "pt" unless `metadata` sets "format": transformers
// refuses safetensors files whose metadata lacks it.
// Replacing an earlier checkpoint in `dir`: the index (or model.safetensors) is written last and is
// the switch from the old checkpoint to the new one; afterwards files of the old checkpoint that
// the new one does not use (its index, model.safetensors, shard files) are removed. When new shard
// files would overwrite files the old index names, the old index is removed first, so that a crash
// in between leaves no readable mixture of old and new shards (CheckpointShards then reports the
// interrupted write). Between the switch to the other layout (sharded to one file or back) and the
// removal of the old one, both model.safetensors and the index exist: a crash there leaves a
// directory that CheckpointShards refuses as ambiguous, naming both. Whole model directories that
// must change in one step are written elsewhere and renamed (io/directory_replace.h).
void write_checkpoint_shards(const std::string& dir, const std::vector<NamedTensor>& tensors,
                             uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata = {});

// A validated checkpoint directory. With an index, the index must be a JSON object whose
// "weight_map" maps tensor names to plain file names in `dir`; every file must exist and be a
// valid safetensors file, every mapped tensor must be in its file, and every tensor in those files
// must be mapped to that file. Without an index, dir/model.safetensors is the checkpoint. A
// directory with both is refused, naming them: Hugging Face's from_pretrained would read
// model.safetensors there, vLLM and SGLang the index's shards.
class CheckpointShards {
 public:
  explicit CheckpointShards(const std::string& dir);

  // Every tensor name, sorted.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return file_of_name_.count(name) > 0; }
  // nextn::Error naming the tensor and the directory if absent.
  const SafetensorsEntry& entry(const std::string& name) const;
  torch::Tensor read(const std::string& name) const;

  // The file (a name inside dir) that holds `name`; nextn::Error if absent.
  const std::string& file_of(const std::string& name) const;
  // The safetensors files of the checkpoint, sorted.
  std::vector<std::string> files() const;
  // Whether the checkpoint was read through model.safetensors.index.json.
  bool has_index() const { return has_index_; }
  const std::string& dir() const { return dir_; }

 private:
  void open_single_file();
  void open_indexed(const std::string& index_path);
  const SafetensorsReader& reader_of(const std::string& name) const;

  std::string dir_;
  bool has_index_ = false;
  std::map<std::string, SafetensorsReader> readers_;  // file name -> reader
  std::map<std::string, std::string> file_of_name_;    // tensor name -> file name
};

}  // namespace nextn::io
