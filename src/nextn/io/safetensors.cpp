#include "nextn/io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <string_view>
#include <unordered_set>

#include "nextn/compat/torch_compat.h"
#include "nextn/io/atomic_file.h"
#include "nextn/io/json_strict.h"
#include "nextn/util/error.h"

// The format is little-endian and tensors are read straight into memory, so the host must be too.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "nextn's safetensors I/O needs a little-endian host");

namespace nextn::io {
namespace {

using json = nlohmann::json;
using compat::NewerDtype;

// The reference implementation refuses larger headers (MAX_HEADER_SIZE in tensor.rs) so that a
// hostile file cannot make a reader parse gigabytes of JSON.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr uint64_t kHeaderLengthBytes = 8;
constexpr const char* kMetadataKey = "__metadata__";

// ---- dtypes -----------------------------------------------------------------------------------

struct DtypeInfo {
  std::string_view name;
  uint64_t bits;  // F4 and F6_* pack several elements into bytes, so sizes are kept in bits
  std::optional<torch::Dtype> torch_dtype;
};

// Every dtype of the reference's `enum Dtype` (safetensors/src/tensor.rs), with the libtorch type
// that holds the same bits. F8_E4M3 is torch's float8_e4m3fn, as in the reference's Python binding.
const std::vector<DtypeInfo>& dtype_table() {
  static const std::vector<DtypeInfo> table = {
      {"BOOL", 8, torch::kBool},
      {"U8", 8, torch::kUInt8},
      {"I8", 8, torch::kInt8},
      {"I16", 16, torch::kInt16},
      {"I32", 32, torch::kInt32},
      {"I64", 64, torch::kInt64},
      {"F16", 16, torch::kFloat16},
      {"BF16", 16, torch::kBFloat16},
      {"F32", 32, torch::kFloat32},
      {"F64", 64, torch::kFloat64},
      {"C64", 64, torch::kComplexFloat},
      {"U16", 16, compat::newer_dtype(NewerDtype::kUInt16)},
      {"U32", 32, compat::newer_dtype(NewerDtype::kUInt32)},
      {"U64", 64, compat::newer_dtype(NewerDtype::kUInt64)},
      {"F8_E4M3", 8, compat::newer_dtype(NewerDtype::kFloat8_e4m3fn)},
      {"F8_E5M2", 8, compat::newer_dtype(NewerDtype::kFloat8_e5m2)},
      {"F8_E4M3FNUZ", 8, compat::newer_dtype(NewerDtype::kFloat8_e4m3fnuz)},
      {"F8_E5M2FNUZ", 8, compat::newer_dtype(NewerDtype::kFloat8_e5m2fnuz)},
      {"F8_E8M0", 8, compat::newer_dtype(NewerDtype::kFloat8_e8m0fnu)},
      // Sub-byte microscaling formats: no libtorch type holds one element per value.
      {"F4", 4, std::nullopt},
      {"F6_E2M3", 6, std::nullopt},
      {"F6_E3M2", 6, std::nullopt},
  };
  return table;
}

const DtypeInfo* find_dtype(std::string_view name) {
  for (const DtypeInfo& info : dtype_table()) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

// ---- header validation --------------------------------------------------------------------------

std::string file_context(const std::string& path) { return cat("safetensors file '", path, "': "); }

std::string tensor_context(const std::string& path, const std::string& name) {
  return cat(file_context(path), "tensor '", name, "': ");
}

bool multiply_overflows(uint64_t a, uint64_t b, uint64_t* product) {
  return __builtin_mul_overflow(a, b, product);
}

// Fields of a tensor entry, exactly these and no others.
void check_entry_fields(const json& value, const std::string& context) {
  NEXTN_CHECK(value.is_object(), context, "entry must be an object with dtype, shape and data_offsets, got ",
              value.type_name());
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    NEXTN_CHECK(value.contains(field), context, "entry is missing field '", field, "'");
  }
  for (const auto& item : value.items()) {
    const std::string& key = item.key();
    NEXTN_CHECK(key == "dtype" || key == "shape" || key == "data_offsets", context,
                "entry has unexpected field '", key, "'");
  }
}

const DtypeInfo& parse_dtype(const json& value, const std::string& context) {
  NEXTN_CHECK(value.is_string(), context, "dtype must be a string, got ", value.dump());
  const std::string name = value.get<std::string>();
  const DtypeInfo* info = find_dtype(name);
  NEXTN_CHECK(info != nullptr, context, "unknown dtype '", name, "'");
  return *info;
}

// A non-negative JSON integer as u64. nlohmann stores integers that fit u64 as unsigned, negative
// ones as signed and everything else (fractions, exponents, huge values) as floats.
uint64_t parse_unsigned(const json& value, const std::string& what, const std::string& context) {
  NEXTN_CHECK(!value.is_number_integer() || value.is_number_unsigned(), context, what,
              " must not be negative, got ", value.dump());
  NEXTN_CHECK(value.is_number_unsigned(), context, what, " must be a non-negative integer, got ",
              value.dump());
  return value.get<uint64_t>();
}

struct ParsedShape {
  std::vector<int64_t> dims;
  uint64_t element_count = 0;
};

// Also rejects shapes whose non-zero dimensions multiply past int64: libtorch computes strides
// from them even when another dimension is 0, and that product must not overflow.
ParsedShape parse_shape(const json& value, const std::string& context) {
  NEXTN_CHECK(value.is_array(), context, "shape must be an array of integers, got ", value.dump());
  ParsedShape shape;
  uint64_t element_count = 1;
  uint64_t stride_product = 1;
  constexpr uint64_t kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  for (const json& dim_value : value) {
    const uint64_t dim = parse_unsigned(dim_value, "shape entry", context);
    const bool overflow = multiply_overflows(element_count, dim, &element_count) ||
                          multiply_overflows(stride_product, std::max<uint64_t>(dim, 1), &stride_product) ||
                          stride_product > kInt64Max;
    NEXTN_CHECK(!overflow, context, "shape ", value.dump(), " overflows the element count");
    shape.dims.push_back(static_cast<int64_t>(dim));
  }
  shape.element_count = element_count;
  return shape;
}

struct ByteRange {
  uint64_t begin;
  uint64_t end;
};

ByteRange parse_offsets(const json& value, uint64_t buffer_size, const std::string& context) {
  NEXTN_CHECK(value.is_array() && value.size() == 2, context,
              "data_offsets must be an array of two integers [begin, end], got ", value.dump());
  const ByteRange range{parse_unsigned(value[0], "data_offsets begin", context),
                        parse_unsigned(value[1], "data_offsets end", context)};
  NEXTN_CHECK(range.begin <= range.end, context, "data_offsets ", value.dump(), " has begin > end");
  NEXTN_CHECK(range.end <= buffer_size, context, "data_offsets ", value.dump(),
              " reach past the end of the ", buffer_size, "-byte data buffer");
  return range;
}

uint64_t expected_byte_size(const ParsedShape& shape, const DtypeInfo& dtype, const std::string& context) {
  uint64_t bits = 0;
  NEXTN_CHECK(!multiply_overflows(shape.element_count, dtype.bits, &bits), context,
              "byte size of ", shape.element_count, " x ", dtype.name, " overflows");
  NEXTN_CHECK(bits % 8 == 0, context, shape.element_count, " elements of ", dtype.name,
              " do not fill whole bytes");
  return bits / 8;
}

SafetensorsEntry parse_entry(const std::string& name, const json& value, uint64_t buffer_size,
                             const std::string& path) {
  const std::string context = tensor_context(path, name);
  check_entry_fields(value, context);
  const DtypeInfo& dtype = parse_dtype(value["dtype"], context);
  ParsedShape shape = parse_shape(value["shape"], context);
  const ByteRange range = parse_offsets(value["data_offsets"], buffer_size, context);
  const uint64_t expected = expected_byte_size(shape, dtype, context);
  NEXTN_CHECK(range.end - range.begin == expected, context, "data_offsets [", range.begin, ", ",
              range.end, "] span ", range.end - range.begin, " bytes but shape ", value["shape"].dump(),
              " of ", dtype.name, " needs ", expected);
  return SafetensorsEntry{name, std::string(dtype.name), std::move(shape.dims), range.begin, range.end};
}

std::map<std::string, std::string> parse_metadata(const json& value, const std::string& path) {
  const std::string context = file_context(path);
  NEXTN_CHECK(value.is_object(), context, "\"", kMetadataKey, "\" must be an object of strings, got ",
              value.type_name());
  std::map<std::string, std::string> metadata;
  for (const auto& item : value.items()) {
    NEXTN_CHECK(item.value().is_string(), context, "\"", kMetadataKey, "\" value of '", item.key(),
                "' must be a string, got ", item.value().dump());
    metadata.emplace(item.key(), item.value().get<std::string>());
  }
  return metadata;
}

// With entries sorted by offset, each tensor must start exactly where the previous one ended and
// the last must end at the end of the buffer: no overlaps (two names for the same bytes) and no
// holes (bytes no tensor owns), as the reference's Metadata::validate demands.
void check_buffer_coverage(const std::vector<SafetensorsEntry>& sorted, uint64_t buffer_size,
                           const std::string& path) {
  const std::string context = file_context(path);
  uint64_t covered_to = 0;
  const SafetensorsEntry* last_nonempty = nullptr;
  for (const SafetensorsEntry& entry : sorted) {
    if (entry.data_begin < covered_to) {
      fail(context, "tensors '", last_nonempty->name, "' [", last_nonempty->data_begin, ", ",
           last_nonempty->data_end, ") and '", entry.name, "' [", entry.data_begin, ", ", entry.data_end,
           ") overlap");
    }
    NEXTN_CHECK(entry.data_begin == covered_to, context, "bytes [", covered_to, ", ", entry.data_begin,
                ") of the data buffer belong to no tensor (the buffer must have no holes)");
    if (entry.data_end > entry.data_begin) last_nonempty = &entry;
    covered_to = entry.data_end;
  }
  NEXTN_CHECK(covered_to == buffer_size, context, "bytes [", covered_to, ", ", buffer_size,
              ") at the end of the data buffer belong to no tensor (the buffer must have no holes)");
}

bool by_offset(const SafetensorsEntry& a, const SafetensorsEntry& b) {
  if (a.data_begin != b.data_begin) return a.data_begin < b.data_begin;
  if (a.data_end != b.data_end) return a.data_end < b.data_end;
  return a.name < b.name;
}

struct ParsedHeader {
  std::vector<SafetensorsEntry> entries;  // sorted by offset
  std::map<std::string, std::string> metadata;
};

ParsedHeader parse_header(const std::string& text, uint64_t buffer_size, const std::string& path) {
  const std::string context = file_context(path);
  NEXTN_CHECK(!text.empty() && text[0] == '{', context,
              "header must be a JSON object starting with '{' (is the file a safetensors file?)");
  const json header = parse_json_rejecting_duplicate_keys(text, cat("safetensors header of '", path, "'"));
  NEXTN_CHECK(header.is_object(), context, "header must be a JSON object, got ", header.type_name());
  ParsedHeader parsed;
  for (const auto& item : header.items()) {
    if (item.key() == kMetadataKey) {
      parsed.metadata = parse_metadata(item.value(), path);
    } else {
      parsed.entries.push_back(parse_entry(item.key(), item.value(), buffer_size, path));
    }
  }
  std::sort(parsed.entries.begin(), parsed.entries.end(), by_offset);
  check_buffer_coverage(parsed.entries, buffer_size, path);
  return parsed;
}

uint64_t decode_u64_le(const unsigned char bytes[8]) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

std::string encode_u64_le(uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  return bytes;
}

// ---- writing ------------------------------------------------------------------------------------

bool is_valid_utf8(const std::string& text) {
  try {
    (void)json(text).dump();
    return true;
  } catch (const json::type_error&) {
    return false;
  }
}

std::vector<int64_t> shape_of(const torch::Tensor& tensor) {
  return std::vector<int64_t>(tensor.sizes().begin(), tensor.sizes().end());
}

// The header JSON, in the tensors' order, padded with spaces so the byte buffer starts at a
// multiple of 8 (what the reference's writer does; readers may then map tensors in place).
std::string build_header(const std::vector<NamedTensor>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  uint64_t offset = 0;
  for (const NamedTensor& named : tensors) {
    const uint64_t size = safetensors_byte_size(named.tensor);
    header[named.name] = {{"dtype", safetensors_dtype_name(named.tensor.scalar_type())},
                          {"shape", shape_of(named.tensor)},
                          {"data_offsets", {offset, offset + size}}};
    offset += size;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

void write_tensor_bytes(AtomicFileWriter& out, const NamedTensor& named) {
  // One tensor at a time, so a model on the GPU never needs a second full copy in host memory.
  const torch::Tensor cpu =
      named.tensor.detach().to(torch::kCPU).resolve_conj().resolve_neg().contiguous();
  const uint64_t size = safetensors_byte_size(cpu);
  NEXTN_CHECK(size == safetensors_byte_size(named.tensor), "tensor '", named.name,
              "' changed size while '", out.path(), "' was being written");
  if (size > 0) out.write(cpu.data_ptr(), size);
}

}  // namespace

// ---- dtype helpers --------------------------------------------------------------------------------

std::string safetensors_dtype_name(torch::Dtype dtype) {
  for (const DtypeInfo& info : dtype_table()) {
    if (info.torch_dtype == dtype) return std::string(info.name);
  }
  fail("libtorch dtype ", c10::toString(dtype), " has no safetensors equivalent");
}

std::optional<torch::Dtype> torch_dtype_for_safetensors(const std::string& dtype) {
  const DtypeInfo* info = find_dtype(dtype);
  return info == nullptr ? std::nullopt : info->torch_dtype;
}

bool is_known_safetensors_dtype(const std::string& dtype) { return find_dtype(dtype) != nullptr; }

uint64_t safetensors_byte_size(const torch::Tensor& tensor) {
  return static_cast<uint64_t>(tensor.numel()) * static_cast<uint64_t>(tensor.element_size());
}

// ---- reading ----------------------------------------------------------------------------------------

class SafetensorsReader::OpenFile {
 public:
  explicit OpenFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    NEXTN_CHECK(fd_ >= 0, "cannot open safetensors file '", path, "': ", errno_text());
    struct stat st {};
    const bool stat_ok = ::fstat(fd_, &st) == 0;
    if (!stat_ok || !S_ISREG(st.st_mode)) {
      const std::string reason = stat_ok ? "not a regular file" : errno_text();
      ::close(fd_);
      fail("cannot read safetensors file '", path, "': ", reason);
    }
    size_ = static_cast<uint64_t>(st.st_size);
  }
  ~OpenFile() { ::close(fd_); }
  OpenFile(const OpenFile&) = delete;
  OpenFile& operator=(const OpenFile&) = delete;

  uint64_t size() const { return size_; }

  // pread loops until `size` bytes arrived; a file that shrank since it was opened is an error.
  void read_exact(void* destination, uint64_t size, uint64_t offset) const {
    char* out = static_cast<char*>(destination);
    while (size > 0) {
      const size_t chunk = static_cast<size_t>(std::min<uint64_t>(size, 1ull << 30));
      const ssize_t n = ::pread(fd_, out, chunk, static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      NEXTN_CHECK(n >= 0, "cannot read safetensors file '", path_, "': ", errno_text());
      NEXTN_CHECK(n > 0, "safetensors file '", path_, "' ended at byte ", offset,
                  " (was it truncated after it was opened?)");
      out += n;
      size -= static_cast<uint64_t>(n);
      offset += static_cast<uint64_t>(n);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

SafetensorsReader::SafetensorsReader(const std::string& path)
    : path_(path), file_(std::make_shared<const OpenFile>(path)) {
  const std::string context = file_context(path);
  const uint64_t file_size = file_->size();
  NEXTN_CHECK(file_size >= kHeaderLengthBytes, context, "file is ", file_size,
              " bytes, shorter than the 8-byte header length");
  unsigned char length_bytes[kHeaderLengthBytes];
  file_->read_exact(length_bytes, kHeaderLengthBytes, 0);
  const uint64_t header_length = decode_u64_le(length_bytes);
  NEXTN_CHECK(header_length <= kMaxHeaderBytes, context, "header length ", header_length,
              " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  NEXTN_CHECK(header_length <= file_size - kHeaderLengthBytes, context, "header length ", header_length,
              " runs past the end of the ", file_size, "-byte file");
  std::string header_text(header_length, '\0');
  file_->read_exact(header_text.data(), header_length, kHeaderLengthBytes);
  data_start_ = kHeaderLengthBytes + header_length;

  ParsedHeader header = parse_header(header_text, file_size - data_start_, path);
  entries_ = std::move(header.entries);
  metadata_ = std::move(header.metadata);
  for (size_t i = 0; i < entries_.size(); ++i) position_of_name_.emplace(entries_[i].name, i);
}

const SafetensorsEntry* SafetensorsReader::find(const std::string& name) const {
  auto it = position_of_name_.find(name);
  return it == position_of_name_.end() ? nullptr : &entries_[it->second];
}

torch::Tensor SafetensorsReader::read(const std::string& name) const {
  const SafetensorsEntry* entry = find(name);
  NEXTN_CHECK(entry != nullptr, file_context(path_), "no tensor named '", name, "'");
  const std::string context = tensor_context(path_, name);
  const std::optional<torch::Dtype> dtype = torch_dtype_for_safetensors(entry->dtype);
  NEXTN_CHECK(dtype.has_value(), context, "dtype ", entry->dtype, " cannot be represented by libtorch ",
              compat::torch_version());

  torch::Tensor tensor = torch::empty(entry->shape, torch::TensorOptions().dtype(*dtype).device(torch::kCPU));
  // The header was validated against the same size table, so this only guards the table itself.
  NEXTN_CHECK(safetensors_byte_size(tensor) == entry->byte_size(), context, "internal: ", entry->dtype,
              " tensor of shape ", tensor.sizes(), " is ", safetensors_byte_size(tensor), " bytes, header says ",
              entry->byte_size());
  if (entry->byte_size() > 0) {
    try {
      file_->read_exact(tensor.data_ptr(), entry->byte_size(), data_start_ + entry->data_begin);
    } catch (const Error& e) {
      fail(context, e.what());
    }
  }

  if (*dtype == torch::kBool) {
    // Any byte but 0 and 1 in a bool is undefined behaviour in C++ (and in libtorch's kernels).
    const auto* bytes = static_cast<const unsigned char*>(tensor.data_ptr());
    for (uint64_t i = 0; i < entry->byte_size(); ++i) {
      NEXTN_CHECK(bytes[i] <= 1, context, "BOOL element ", i, " is byte ", static_cast<int>(bytes[i]),
                  ", not 0 or 1");
    }
  }
  return tensor;
}

// ---- writing (public) ---------------------------------------------------------------------------------

void check_safetensors_writable(const std::vector<NamedTensor>& tensors,
                                const std::map<std::string, std::string>& metadata, const std::string& target) {
  std::unordered_set<std::string> seen;
  for (const NamedTensor& named : tensors) {
    const std::string context = cat("cannot write '", target, "': tensor '", named.name, "' ");
    NEXTN_CHECK(named.name != kMetadataKey, "cannot write '", target, "': '", kMetadataKey,
                "' is reserved and cannot name a tensor");
    NEXTN_CHECK(is_valid_utf8(named.name), "cannot write '", target, "': a tensor name is not valid UTF-8");
    NEXTN_CHECK(seen.insert(named.name).second, context, "appears twice");
    NEXTN_CHECK(named.tensor.defined(), context, "is undefined");
    NEXTN_CHECK(named.tensor.layout() == torch::kStrided, context, "is not a dense (strided) tensor");
    try {
      (void)safetensors_dtype_name(named.tensor.scalar_type());
    } catch (const Error& e) {
      fail(context, "cannot be written: ", e.what());
    }
  }
  for (const auto& [key, value] : metadata) {
    NEXTN_CHECK(is_valid_utf8(key) && is_valid_utf8(value), "cannot write '", target,
                "': metadata keys and values must be valid UTF-8");
  }
}

void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  check_safetensors_writable(tensors, metadata, path);
  const std::string header = build_header(tensors, metadata);
  AtomicFileWriter out(path);
  out.write(encode_u64_le(header.size()));
  out.write(header);
  for (const NamedTensor& named : tensors) write_tensor_bytes(out, named);
  out.commit();
}

}  // namespace nextn::io
