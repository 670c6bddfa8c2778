#include "nextn/checkpoint/model_export.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <system_error>
#include <vector>

#include "nextn/inference/token_ranking.h"
#include "nextn/io/atomic_file.h"
#include "nextn/io/checkpoint_shards.h"
#include "nextn/io/directory_replace.h"
#include "nextn/tokenizer/tokenizer.h"
#include "nextn/util/error.h"

namespace nextn {
namespace {

namespace fs = std::filesystem;

constexpr const char* kConfigFile = "config.json";
constexpr const char* kTokenizerFile = "tokenizer.json";
// Read beside tokenizer.json: special tokens and the chat template (tokenizer/tokenizer_config.h).
constexpr const char* kTokenizerConfigFile = "tokenizer_config.json";

// "model.safetensors.tmp.1234" -> "model.safetensors": what AtomicFileWriter was writing when its
// process died. Other names come back unchanged.
std::string without_writer_temporary_suffix(const std::string& name) {
  const size_t marker = name.rfind(".tmp.");
  if (marker == std::string::npos || marker == 0) return name;
  const std::string digits = name.substr(marker + 5);
  const bool all_digits = std::all_of(digits.begin(), digits.end(), [](unsigned char c) { return std::isdigit(c); });
  return !digits.empty() && all_digits ? name.substr(0, marker) : name;
}

// At most `limit` names, quoted and separated by commas, and how many more there are.
std::string list_names(const std::vector<std::string>& names, size_t limit) {
  std::string text;
  for (size_t i = 0; i < names.size() && i < limit; ++i) text += cat(i == 0 ? "" : ", ", "'", names[i], "'");
  if (names.size() > limit) text += cat(" and ", names.size() - limit, " more");
  return text;
}

// The entries of `dir` that no export has, sorted.
std::vector<std::string> foreign_entries(const std::string& dir) {
  std::vector<std::string> foreign;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!is_export_file_name(name)) foreign.push_back(name);
  }
  std::sort(foreign.begin(), foreign.end());
  return foreign;
}

// The files that travel with the weights: the tokenizer and its config, and the drafters'
// vocabulary (nextn draft-vocab) unless the drafters are dropped.
std::vector<std::string> companion_files(bool drop_mtp) {
  std::vector<std::string> companions = {kTokenizerFile, kTokenizerConfigFile};
  if (!drop_mtp) companions.push_back(inference::kTokenRankingFile);
  return companions;
}

}  // namespace

bool is_export_file_name(const std::string& written_name) {
  const std::string name = without_writer_temporary_suffix(written_name);
  return name == kConfigFile || name == io::kSingleCheckpointFile || name == io::kCheckpointIndexFile ||
         io::is_checkpoint_shard_file_name(name) || name == kTokenizerFile || name == kTokenizerConfigFile ||
         name == inference::kTokenRankingFile;
}

void check_export_target(const std::string& out_dir) {
  std::error_code ec;
  if (!fs::exists(out_dir, ec)) return;
  NEXTN_CHECK(fs::is_directory(out_dir, ec), "--out '", out_dir, "' exists and is not a directory");
  const std::vector<std::string> foreign = foreign_entries(out_dir);
  NEXTN_CHECK(foreign.empty(), "--out '", out_dir, "' holds ", list_names(foreign, 5),
              ", which no export has: an export replaces the whole directory, so it only goes into a new or "
              "empty directory or over an earlier export (choose another --out, or move those files away)");
}

ExportResult write_export_files(DeepSeekV3Impl& model, const std::string& source_dir, const std::string& dir,
                                const SaveModelOptions& options) {
  save_model(model, dir, options);
  ExportResult result;
  for (const std::string& name : companion_files(options.drop_mtp)) {
    const std::string source = (fs::path(source_dir) / name).string();
    if (!io::file_exists(source)) continue;
    io::write_file_atomic((fs::path(dir) / name).string(), io::read_file(source));
    if (name == kTokenizerFile) result.has_tokenizer = true;
  }
  return result;
}

ExportResult export_model(DeepSeekV3Impl& model, const std::string& source_dir, const std::string& out_dir,
                          const SaveModelOptions& options) {
  check_export_target(out_dir);
  ExportResult result;
  io::replace_directory(out_dir, [&](const std::string& staging) {
    result = write_export_files(model, source_dir, staging, options);
  });
  return result;
}

ExportResult init_model_directory(const ModelConfig& config, uint64_t seed, const std::string& tokenizer_path,
                                  const std::string& out_dir, const SaveModelOptions& options) {
  check_export_target(out_dir);
  std::string tokenizer_bytes, tokenizer_config_bytes;
  if (!tokenizer_path.empty()) {
    const int32_t ids = tokenizer::Tokenizer::load(tokenizer_path).vocab_size();  // reads the config beside it too
    NEXTN_CHECK(ids <= config.vocab_size, "tokenizer '", tokenizer_path, "' has ", ids,
                " ids, more than the model's vocab_size of ", config.vocab_size);
    tokenizer_bytes = io::read_file(tokenizer_path);
    const std::string beside = (fs::path(tokenizer_path).parent_path() / kTokenizerConfigFile).string();
    if (io::file_exists(beside)) tokenizer_config_bytes = io::read_file(beside);
  }
  torch::manual_seed(seed);  // as TrainingRun seeds its model's initialization
  DeepSeekV3 model(config);
  ExportResult result;
  io::replace_directory(out_dir, [&](const std::string& staging) {
    save_model(*model, staging, options);
    if (tokenizer_path.empty()) return;
    io::write_file_atomic((fs::path(staging) / kTokenizerFile).string(), tokenizer_bytes);
    if (!tokenizer_config_bytes.empty()) {
      io::write_file_atomic((fs::path(staging) / kTokenizerConfigFile).string(), tokenizer_config_bytes);
    }
    result.has_tokenizer = true;
  });
  return result;
}

}  // namespace nextn
