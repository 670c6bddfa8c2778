// Reading and writing the safetensors format (Hugging Face), the file format of HF checkpoints.
//
// Layout (huggingface/safetensors README, "Format"; validation rules follow the reference
// implementation's safetensors/src/tensor.rs, Metadata::validate and SafeTensors::read_metadata):
//   - 8 bytes: N, unsigned little-endian 64-bit, the header length;
//   - N bytes: UTF-8 JSON object. It MUST begin with '{' and MAY be padded at the end with spaces
//     (writers pad so that the byte buffer starts 8-aligned). Each key is a tensor name mapping
//     to {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, with offsets relative to
//     the start of the byte buffer and `end` one past the last byte; the optional key
//     "__metadata__" maps to an object of string -> string. Duplicate keys are disallowed.
//   - the rest: the byte buffer, little-endian, row-major (C order), no strides. It must be covered
//     entirely by the tensors, without holes or overlaps ("This prevents the creation of polyglot
//     files"), so the last tensor ends exactly at the end of the file.
// Empty tensors (a 0 in the shape) and scalars (shape []) are allowed; the reference also caps the
// header at 100,000,000 bytes, which we follow.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace nextn::io {

// One tensor as the header describes it. `data_begin`/`data_end` are relative to the byte buffer
// that follows the header, as in the file.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // the safetensors name: "F32", "BF16", "F8_E4M3", ...
  std::vector<int64_t> shape;
  uint64_t data_begin = 0;
  uint64_t data_end = 0;

  uint64_t byte_size() const { return data_end - data_begin; }
};

// The safetensors dtype name of a libtorch dtype ("F32" for torch::kFloat32); nextn::Error when
// safetensors has no name for it (e.g. complex128, quantized types).
std::string safetensors_dtype_name(torch::Dtype dtype);
// The libtorch dtype of a safetensors dtype name; nullopt when the name is unknown or when this
// libtorch cannot represent it (F8_E4M3 before libtorch 2.1, U16/U32/U64 before 2.3, F4, F6_*).
std::optional<torch::Dtype> torch_dtype_for_safetensors(const std::string& dtype);
// Whether `dtype` is a name the safetensors format defines (whether or not libtorch has it).
bool is_known_safetensors_dtype(const std::string& dtype);

// A validated view of one safetensors file. The constructor reads and checks the whole header
// (see safetensors.cpp for the rules); tensor data is read on demand with pread, so files of any
// size can be opened. The file stays open for the reader's lifetime, so reads see the file that
// was validated even if another file is later renamed over the path. Copies share the open file;
// reads are safe from several threads at once.
class SafetensorsReader {
 public:
  explicit SafetensorsReader(const std::string& path);

  // Every tensor, sorted by data_begin (then data_end, then name).
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  // nullptr if the file has no tensor of that name.
  const SafetensorsEntry* find(const std::string& name) const;
  // The "__metadata__" object; empty when the file has none.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // A new CPU tensor with the file's dtype and shape, read straight into its storage. nextn::Error
  // naming the tensor when it is absent, when libtorch cannot represent its dtype, when a BOOL
  // tensor holds a byte other than 0 or 1, or when the file can no longer be read in full.
  torch::Tensor read(const std::string& name) const;
  const std::string& path() const { return path_; }

 private:
  class OpenFile;

  std::string path_;
  std::shared_ptr<const OpenFile> file_;
  uint64_t data_start_ = 0;  // absolute file offset of the byte buffer: 8 + header length
  std::vector<SafetensorsEntry> entries_;
  std::unordered_map<std::string, size_t> position_of_name_;  // index into entries_
  std::map<std::string, std::string> metadata_;
};

struct NamedTensor {
  std::string name;
  torch::Tensor tensor;
};

// Checks that `tensors` and `metadata` can be written as one safetensors file: tensor names unique,
// valid UTF-8 and not "__metadata__"; tensors defined, strided (dense), of a dtype safetensors can
// name; metadata valid UTF-8. nextn::Error naming `target` and the offending tensor otherwise.
// write_safetensors calls it; callers that write several files call it first, so that nothing is
// written for an invalid list.
void check_safetensors_writable(const std::vector<NamedTensor>& tensors,
                                const std::map<std::string, std::string>& metadata, const std::string& target);

// The number of bytes `tensor` occupies in a safetensors byte buffer (numel x element size).
uint64_t safetensors_byte_size(const torch::Tensor& tensor);

// Writes `tensors` in the given order, each with its own dtype and shape (non-contiguous or
// non-CPU tensors are copied to contiguous CPU memory one at a time while writing), the header
// padded with spaces to a multiple of 8 bytes, and "__metadata__" when `metadata` is non-empty.
// The file appears atomically (temporary file, fsync, rename).
void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace nextn::io
