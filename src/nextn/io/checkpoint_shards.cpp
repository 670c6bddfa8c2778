#include "nextn/io/checkpoint_shards.h"

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string_view>
#include <system_error>

#include "nextn/io/atomic_file.h"
#include "nextn/io/json_strict.h"
#include "nextn/util/error.h"

namespace nextn::io {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string join_path(const std::string& dir, const std::string& file) { return (fs::path(dir) / file).string(); }

// A weight_map value must name a file directly inside the checkpoint directory, so that an index
// cannot make us open files elsewhere ("../x", "/etc/x").
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

bool is_safetensors_file_name(const std::string& name) {
  const std::string suffix = ".safetensors";
  return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<std::string> shard_files_in(const std::string& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& item : fs::directory_iterator(dir, ec)) {
    const std::string name = item.path().filename().string();
    if (is_checkpoint_shard_file_name(name)) found.push_back(name);
  }
  return found;
}

// ---- writing --------------------------------------------------------------------------------------

// Positions into `tensors`, grouped into shards in the given order: a shard is closed when the next
// tensor would take it past the limit, so a tensor larger than the limit ends up alone.
std::vector<std::vector<size_t>> plan_shards(const std::vector<NamedTensor>& tensors, uint64_t max_shard_bytes) {
  std::vector<std::vector<size_t>> shards;
  std::vector<size_t> current;
  uint64_t current_bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t bytes = safetensors_byte_size(tensors[i].tensor);
    if (!current.empty() && current_bytes + bytes > max_shard_bytes) {
      shards.push_back(std::move(current));
      current.clear();
      current_bytes = 0;
    }
    current.push_back(i);
    current_bytes += bytes;
  }
  if (!current.empty()) shards.push_back(std::move(current));
  return shards;
}

uint64_t total_bytes(const std::vector<NamedTensor>& tensors) {
  uint64_t total = 0;
  for (const NamedTensor& named : tensors) total += safetensors_byte_size(named.tensor);
  return total;
}

// The safetensors files the index in `dir` refers to (only those: an index naming "config.json"
// must not get that file deleted as stale); if it cannot be parsed, `readable` is false and the
// caller must assume it may refer to anything.
struct PreviousIndex {
  bool exists = false;
  bool readable = false;
  std::set<std::string> files;
};

PreviousIndex read_previous_index(const std::string& dir) {
  PreviousIndex previous;
  const std::string path = join_path(dir, kCheckpointIndexFile);
  previous.exists = file_exists(path);
  if (!previous.exists) return previous;
  try {
    const json index = json::parse(read_file(path));
    for (const auto& item : index.at("weight_map").items()) {
      const std::string file = item.value().get<std::string>();
      if (is_plain_file_name(file) && is_safetensors_file_name(file)) previous.files.insert(file);
    }
    previous.readable = true;
  } catch (const std::exception&) {
    previous.readable = false;
  }
  return previous;
}

void remove_file(const std::string& path) {
  std::error_code ec;
  fs::remove(path, ec);
  NEXTN_CHECK(!ec, "cannot remove '", path, "': ", ec.message());
}

void remove_if_present(const std::string& dir, const std::string& file) {
  if (file_exists(join_path(dir, file))) remove_file(join_path(dir, file));
}

// Removes the files of an earlier checkpoint in `dir` that the one just written does not use.
void remove_stale_files(const std::string& dir, const std::set<std::string>& in_use, const PreviousIndex& previous) {
  std::set<std::string> candidates(previous.files.begin(), previous.files.end());
  for (const std::string& name : shard_files_in(dir)) candidates.insert(name);
  candidates.insert(kSingleCheckpointFile);
  candidates.insert(kCheckpointIndexFile);
  for (const std::string& name : candidates) {
    if (in_use.count(name) == 0) remove_if_present(dir, name);
  }
  fsync_directory(dir);
}

// Before overwriting files that the old index names, take the old checkpoint out of service: with
// neither index nor model.safetensors, a reader reports an interrupted write instead of reading a
// mixture of old and new shards.
void retire_previous_if_overwritten(const std::string& dir, const std::set<std::string>& to_write,
                                    const PreviousIndex& previous) {
  if (!previous.exists) return;
  bool overwrites = !previous.readable;
  for (const std::string& file : to_write) overwrites = overwrites || previous.files.count(file) > 0;
  if (!overwrites) return;
  if (to_write.count(kSingleCheckpointFile) == 0) remove_if_present(dir, kSingleCheckpointFile);
  remove_file(join_path(dir, kCheckpointIndexFile));
  fsync_directory(dir);
}

std::map<std::string, std::string> with_format_key(std::map<std::string, std::string> metadata) {
  metadata.emplace("format", "pt");  // keeps a caller's own "format"
  return metadata;
}

std::string index_json(const std::vector<NamedTensor>& tensors, const std::vector<std::vector<size_t>>& shards) {
  json weight_map = json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    for (size_t i : shards[s]) weight_map[tensors[i].name] = checkpoint_shard_file_name(s + 1, shards.size());
  }
  json index = {{"metadata", {{"total_size", total_bytes(tensors)}}}, {"weight_map", weight_map}};
  return index.dump(2) + "\n";
}

std::vector<NamedTensor> select(const std::vector<NamedTensor>& tensors, const std::vector<size_t>& positions) {
  std::vector<NamedTensor> selected;
  selected.reserve(positions.size());
  for (size_t i : positions) selected.push_back(tensors[i]);
  return selected;
}

// ---- reading ----------------------------------------------------------------------------------------

std::string index_context(const std::string& index_path) { return cat("checkpoint index '", index_path, "': "); }

const json& weight_map_of(const json& index, const std::string& index_path) {
  const std::string context = index_context(index_path);
  NEXTN_CHECK(index.is_object(), context, "must be a JSON object, got ", index.type_name());
  NEXTN_CHECK(index.contains("weight_map"), context, "has no \"weight_map\"");
  const json& weight_map = index["weight_map"];
  NEXTN_CHECK(weight_map.is_object(), context, "\"weight_map\" must be an object, got ", weight_map.type_name());
  if (index.contains("metadata")) {
    NEXTN_CHECK(index["metadata"].is_object(), context, "\"metadata\" must be an object, got ",
                index["metadata"].type_name());
  }
  return weight_map;
}

// Tensor names per file, as the index maps them.
std::map<std::string, std::set<std::string>> names_by_file(const json& weight_map, const std::string& index_path) {
  const std::string context = index_context(index_path);
  std::map<std::string, std::set<std::string>> by_file;
  for (const auto& item : weight_map.items()) {
    NEXTN_CHECK(item.value().is_string(), context, "tensor '", item.key(), "' maps to ", item.value().dump(),
                ", not a file name");
    const std::string file = item.value().get<std::string>();
    NEXTN_CHECK(is_plain_file_name(file), context, "tensor '", item.key(), "' maps to '", file,
                "', which is not a plain file name inside the checkpoint directory");
    by_file[file].insert(item.key());
  }
  return by_file;
}

void check_shard_matches_index(const SafetensorsReader& shard, const std::string& file,
                               const std::set<std::string>& mapped, const json& weight_map,
                               const std::string& index_path) {
  const std::string context = index_context(index_path);
  for (const std::string& name : mapped) {
    NEXTN_CHECK(shard.find(name) != nullptr, context, "maps tensor '", name, "' to '", file,
                "', which has no such tensor");
  }
  for (const SafetensorsEntry& entry : shard.entries()) {
    if (mapped.count(entry.name) > 0) continue;
    if (weight_map.contains(entry.name)) {
      fail(context, "shard '", file, "' holds tensor '", entry.name, "', which the index maps to '",
           weight_map[entry.name].get<std::string>(), "'");
    }
    fail(context, "shard '", file, "' holds tensor '", entry.name, "', which the index does not list");
  }
}

// With both files, readers disagree on the weights: transformers' from_pretrained loads
// model.safetensors, vLLM and SGLang the shards the index names. Whichever nextn chose, some other
// tool would compute with other weights, so the directory is refused until one layout is removed.
void refuse_two_layouts(const std::string& dir, bool has_single_file) {
  NEXTN_CHECK(!has_single_file, "checkpoint '", dir, "' holds both ", kSingleCheckpointFile, " and ",
              kCheckpointIndexFile, ": Hugging Face's from_pretrained would load ", kSingleCheckpointFile,
              ", vLLM and SGLang the shards the index names. Remove the one that is not the model (a rewrite "
              "interrupted between its two layouts leaves both; the newer file is the new model)");
}

}  // namespace

std::string checkpoint_shard_file_name(size_t shard_number, size_t shard_count) {
  char buffer[96];
  std::snprintf(buffer, sizeof(buffer), "model-%05zu-of-%05zu.safetensors", shard_number, shard_count);
  return buffer;
}

bool is_checkpoint_shard_file_name(const std::string& name) {
  size_t pos = 0;
  auto literal = [&](std::string_view text) {
    if (name.compare(pos, text.size(), text) != 0) return false;
    pos += text.size();
    return true;
  };
  auto digits = [&] {
    const size_t start = pos;
    while (pos < name.size() && std::isdigit(static_cast<unsigned char>(name[pos]))) ++pos;
    return pos - start >= 5;
  };
  return literal("model-") && digits() && literal("-of-") && digits() && literal(".safetensors") &&
         pos == name.size();
}

void write_checkpoint_shards(const std::string& dir, const std::vector<NamedTensor>& tensors,
                             uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata) {
  NEXTN_CHECK(max_shard_bytes > 0, "cannot write checkpoint '", dir, "': the shard size limit must be positive");
  check_safetensors_writable(tensors, metadata, dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  NEXTN_CHECK(!ec, "cannot create checkpoint directory '", dir, "': ", ec.message());

  const std::map<std::string, std::string> file_metadata = with_format_key(metadata);
  const PreviousIndex previous = read_previous_index(dir);

  if (total_bytes(tensors) <= max_shard_bytes) {
    retire_previous_if_overwritten(dir, {kSingleCheckpointFile}, previous);
    write_safetensors(join_path(dir, kSingleCheckpointFile), tensors, file_metadata);
    remove_stale_files(dir, {kSingleCheckpointFile}, previous);  // an old index goes: no longer two layouts
    return;
  }

  const std::vector<std::vector<size_t>> shards = plan_shards(tensors, max_shard_bytes);
  std::vector<std::string> shard_files;
  for (size_t s = 0; s < shards.size(); ++s) shard_files.push_back(checkpoint_shard_file_name(s + 1, shards.size()));
  std::set<std::string> in_use(shard_files.begin(), shard_files.end());
  retire_previous_if_overwritten(dir, in_use, previous);
  for (size_t s = 0; s < shards.size(); ++s) {
    write_safetensors(join_path(dir, shard_files[s]), select(tensors, shards[s]), file_metadata);
  }
  // The switch; an old model.safetensors goes next, ending the instant of two layouts.
  write_file_atomic(join_path(dir, kCheckpointIndexFile), index_json(tensors, shards));
  in_use.insert(kCheckpointIndexFile);
  remove_stale_files(dir, in_use, previous);
}

CheckpointShards::CheckpointShards(const std::string& dir) : dir_(dir) {
  std::error_code ec;
  NEXTN_CHECK(fs::is_directory(dir, ec), "checkpoint directory '", dir, "' does not exist or is not a directory");
  const std::string index_path = join_path(dir, kCheckpointIndexFile);
  const bool has_single_file = file_exists(join_path(dir, kSingleCheckpointFile));
  if (file_exists(index_path)) {
    refuse_two_layouts(dir, has_single_file);
    open_indexed(index_path);
  } else if (has_single_file) {
    open_single_file();
  } else {
    const size_t orphans = shard_files_in(dir).size();
    fail("no checkpoint in '", dir, "': it has neither ", kCheckpointIndexFile, " nor ", kSingleCheckpointFile,
         orphans > 0 ? cat(" (but ", orphans, " shard files: an interrupted write?)") : std::string());
  }
}

void CheckpointShards::open_single_file() {
  const SafetensorsReader& reader =
      readers_.emplace(kSingleCheckpointFile, SafetensorsReader(join_path(dir_, kSingleCheckpointFile))).first->second;
  for (const SafetensorsEntry& entry : reader.entries()) file_of_name_.emplace(entry.name, kSingleCheckpointFile);
}

void CheckpointShards::open_indexed(const std::string& index_path) {
  has_index_ = true;
  const json index = parse_json_rejecting_duplicate_keys(read_file(index_path), cat("checkpoint index '", index_path, "'"));
  const json& weight_map = weight_map_of(index, index_path);
  for (const auto& [file, mapped] : names_by_file(weight_map, index_path)) {
    const std::string path = join_path(dir_, file);
    NEXTN_CHECK(file_exists(path), index_context(index_path), "maps tensor '", *mapped.begin(), "' to '", file,
                "', which does not exist");
    const SafetensorsReader& reader = readers_.emplace(file, SafetensorsReader(path)).first->second;
    check_shard_matches_index(reader, file, mapped, weight_map, index_path);
    for (const std::string& name : mapped) file_of_name_.emplace(name, file);
  }
}

std::vector<std::string> CheckpointShards::names() const {
  std::vector<std::string> names;
  names.reserve(file_of_name_.size());
  for (const auto& item : file_of_name_) names.push_back(item.first);
  return names;
}

const std::string& CheckpointShards::file_of(const std::string& name) const {
  auto it = file_of_name_.find(name);
  NEXTN_CHECK(it != file_of_name_.end(), "checkpoint '", dir_, "' has no tensor named '", name, "'");
  return it->second;
}

const SafetensorsReader& CheckpointShards::reader_of(const std::string& name) const {
  return readers_.at(file_of(name));
}

const SafetensorsEntry& CheckpointShards::entry(const std::string& name) const { return *reader_of(name).find(name); }

torch::Tensor CheckpointShards::read(const std::string& name) const { return reader_of(name).read(name); }

std::vector<std::string> CheckpointShards::files() const {
  std::vector<std::string> files;
  for (const auto& item : readers_) files.push_back(item.first);
  return files;
}

}  // namespace nextn::io
