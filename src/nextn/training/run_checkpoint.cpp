#include "nextn/training/run_checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>

#include "nextn/checkpoint/hf_checkpoint.h"
#include "nextn/inference/token_ranking.h"
#include "nextn/io/atomic_file.h"
#include "nextn/io/file_checksums.h"
#include "nextn/io/json_strict.h"
#include "nextn/io/safetensors.h"
#include "nextn/util/error.h"

namespace fs = std::filesystem;

namespace nextn {
namespace {

constexpr const char* kPrefix = "step-";
constexpr const char* kTempPrefix = ".tmp-";
constexpr const char* kDeletePrefix = ".del-";  // a checkpoint being removed
constexpr const char* kCorruptSuffix = ".corrupt";
constexpr const char* kRngTensor = "rng.cpu_state";

std::optional<int64_t> step_of(const std::string& name) {
  if (name.rfind(kPrefix, 0) != 0) return std::nullopt;
  std::string digits = name.substr(std::string(kPrefix).size());
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), ::isdigit)) return std::nullopt;
  return std::stoll(digits);
}

// What is wrong with a step-N directory, as one sentence naming the files ("" when nothing is):
// a file its checksums.json lists is missing, of another size or, when `contents`, of another
// hash, or checksums.json itself cannot be read. A checkpoint from before checksums were written
// must hold its four essential files. Checkpoints are written under another name and renamed into
// place, and removed by a rename first, so a kill never leaves a step-N directory that fails
// this: one that does was damaged afterwards.
std::string checkpoint_problems(const fs::path& dir, bool contents) {
  const io::ChecksumReport report = io::verify_checksums_reporting(dir.string(), contents);
  if (report.listed) return report.ok() ? "" : io::describe_problems(dir.string(), report);
  std::string missing;
  for (const char* name : {"config.json", "trainer_state.json", "optimizer.safetensors"}) {
    if (!io::file_exists((dir / name).string())) missing += std::string(missing.empty() ? "" : ", ") + name;
  }
  if (!io::file_exists((dir / "model.safetensors").string()) &&
      !io::file_exists((dir / "model.safetensors.index.json").string())) {
    missing += std::string(missing.empty() ? "" : ", ") + "model.safetensors";
  }
  if (missing.empty()) return "";
  return cat("'", dir.string(), "' is corrupt: it has no ", io::kChecksumsFile, " and lacks ", missing);
}

// Every step-N directory, oldest first, whatever its state: a damaged one is listed so that
// verify reports it, loading refuses it and a resumed run sets it aside, rather than passing over
// it in silence (temporary, half-removed and set-aside directories have other names).
std::vector<std::pair<int64_t, fs::path>> step_directories(const std::string& run_dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  fs::path dir = checkpoints_dir(run_dir);
  if (!fs::exists(dir)) return found;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_directory()) continue;
    if (auto step = step_of(entry.path().filename().string())) found.push_back({*step, entry.path()});
  }
  std::sort(found.begin(), found.end());
  return found;
}

// The step-N directories holding every file at its size (contents not hashed): those that
// pruning counts and removes, and that run files are carried from. A damaged one is neither
// counted nor removed: it stays for the user, or for a resumed run to set aside.
std::vector<std::pair<int64_t, fs::path>> complete_checkpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  for (auto& [step, path] : step_directories(run_dir)) {
    if (checkpoint_problems(path, /*contents=*/false).empty()) found.push_back({step, path});
  }
  return found;
}

// Files that describe the run's tokens rather than its weights, added to a checkpoint after it was
// written (`nextn draft-vocab` writes draft_vocab.json into the newest one): each new checkpoint
// takes them over from the newest existing one, so that a run trained further (--resume) keeps them.
// Removal in one step too: the directory leaves the step-N names by a rename before its files are
// deleted, so that a kill during the deletion leaves no partial step-N (the next run removes the
// rest, remove_incomplete_checkpoints).
void remove_checkpoint(const fs::path& dir) {
  const fs::path doomed = dir.parent_path() / (kDeletePrefix + dir.filename().string() + "-" + std::to_string(::getpid()));
  fs::remove_all(doomed);
  fs::rename(dir, doomed);
  io::fsync_directory(dir.parent_path().string());
  fs::remove_all(doomed);
}

void carry_run_files(const std::string& run_dir, const fs::path& new_checkpoint) {
  auto existing = complete_checkpoints(run_dir);
  if (existing.empty()) return;
  for (const char* name : {inference::kTokenRankingFile}) {
    const fs::path from = existing.back().second / name;
    if (io::file_exists(from.string())) {
      io::write_file_atomic((new_checkpoint / name).string(), io::read_file(from.string()));
    }
  }
}

}  // namespace

nlohmann::json to_json(const TrainerState& s) {
  return {{"step", s.step},
          {"total_steps", s.total_steps},
          {"tokens_seen", s.tokens_seen},
          {"skipped_steps", s.skipped_steps},
          {"consecutive_bad_steps", s.consecutive_bad_steps},
          {"elapsed_seconds", s.elapsed_seconds},
          {"loader_state", s.loader_state},
          {"dataset_id", s.dataset_id},
          {"global_batch", s.global_batch}};
}

TrainerState trainer_state_from_json(const nlohmann::json& j) {
  static const std::string kState = "trainer_state.json";
  TrainerState s;
  try {
    s.step = io::json_integer(j, "step", kState);
    s.total_steps = io::json_integer(j, "total_steps", kState);
    s.tokens_seen = io::json_integer(j, "tokens_seen", kState);
    s.skipped_steps = io::json_integer(j, "skipped_steps", kState);
    s.consecutive_bad_steps = io::json_integer(j, "consecutive_bad_steps", kState);
    s.elapsed_seconds = j.at("elapsed_seconds").get<double>();
    s.loader_state = j.at("loader_state");
    s.dataset_id = j.at("dataset_id").get<std::string>();
    s.global_batch = io::json_integer(j, "global_batch", kState, 0);
  } catch (const nlohmann::json::exception& e) {
    fail("trainer_state.json is incomplete or mistyped: ", e.what());
  }
  NEXTN_CHECK(s.global_batch >= 0, "trainer_state.json: global_batch ", s.global_batch, " is negative");
  NEXTN_CHECK(s.step >= 0 && s.step <= s.total_steps, "trainer_state.json: step ", s.step, " outside [0, total_steps=",
              s.total_steps, "]");
  return s;
}

std::string checkpoints_dir(const std::string& run_dir) { return (fs::path(run_dir) / "checkpoints").string(); }

std::string checkpoint_dir_name(int64_t step) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%s%08lld", kPrefix, static_cast<long long>(step));
  return buffer;
}

PreparedCheckpoint prepare_run_checkpoint(const std::string& run_dir, DeepSeekV3Impl& model,
                                          const FullExperts& full_experts,
                                          const std::vector<std::pair<std::string, torch::Tensor>>& optimizer_tensors,
                                          int64_t optimizer_steps, const TrainerState& state,
                                          const std::string& tokenizer_json) {
  const fs::path parent = checkpoints_dir(run_dir);
  fs::create_directories(parent);
  PreparedCheckpoint prepared;
  prepared.run_dir = run_dir;
  prepared.final_dir = (parent / checkpoint_dir_name(state.step)).string();
  prepared.temp_dir =
      (parent / (kTempPrefix + checkpoint_dir_name(state.step) + "-" + std::to_string(::getpid()))).string();
  const fs::path temp_dir = prepared.temp_dir;
  fs::remove_all(temp_dir);
  fs::create_directories(temp_dir);
  try {
    SaveModelOptions model_options;
    model_options.dtype = torch::kFloat;  // master weights, exactly
    model_options.full_experts = full_experts;
    save_model(model, temp_dir.string(), model_options);

    std::vector<io::NamedTensor> tensors;
    for (const auto& [name, tensor] : optimizer_tensors) tensors.push_back({name, tensor.to(torch::kCPU)});
    tensors.push_back({kRngTensor, torch::globalContext().defaultGenerator(torch::kCPU).get_state()});
    io::write_safetensors((temp_dir / "optimizer.safetensors").string(), tensors,
                          {{"optimizer_steps", std::to_string(optimizer_steps)}});

    io::write_file_atomic((temp_dir / "trainer_state.json").string(), to_json(state).dump(2) + "\n");
    if (!tokenizer_json.empty()) {
      io::write_file_atomic((temp_dir / "tokenizer.json").string(), io::read_file(tokenizer_json));
    }
    carry_run_files(run_dir, temp_dir);
    io::write_checksums(temp_dir.string());  // last: it lists every file above
    io::fsync_files_and_directory(temp_dir.string());
  } catch (...) {
    discard_run_checkpoint(prepared);
    throw;
  }
  return prepared;
}

std::string commit_run_checkpoint(const PreparedCheckpoint& prepared, int64_t keep) {
  // The rename makes the checkpoint visible in one step.
  const fs::path final_dir = prepared.final_dir, parent = final_dir.parent_path();
  if (fs::exists(final_dir)) remove_checkpoint(final_dir);  // only when a step is saved twice
  fs::rename(prepared.temp_dir, final_dir);
  io::fsync_directory(parent.string());

  auto all = complete_checkpoints(prepared.run_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) remove_checkpoint(all[i].second);
  return final_dir.string();
}

void discard_run_checkpoint(const PreparedCheckpoint& prepared) {
  std::error_code ignored;
  fs::remove_all(prepared.temp_dir, ignored);
}

std::string save_run_checkpoint(const std::string& run_dir, DeepSeekV3Impl& model, const AdamW& optimizer,
                                const TrainerState& state, const std::string& tokenizer_json, int64_t keep) {
  PreparedCheckpoint prepared =
      prepare_run_checkpoint(run_dir, model, {}, optimizer.state_tensors(), optimizer.steps_taken(), state, tokenizer_json);
  return commit_run_checkpoint(prepared, keep);
}

std::optional<std::string> latest_run_checkpoint(const std::string& run_dir) {
  auto all = step_directories(run_dir);
  if (all.empty()) return std::nullopt;
  return all.back().second.string();
}

std::vector<std::string> run_checkpoints(const std::string& run_dir) {
  std::vector<std::string> paths;
  for (const auto& [step, path] : step_directories(run_dir)) paths.push_back(path.string());
  return paths;
}

ValidCheckpoint latest_valid_run_checkpoint(const std::string& run_dir) {
  ValidCheckpoint result;
  auto all = step_directories(run_dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    const std::string dir = it->second.string();
    const std::string problem = checkpoint_problems(it->second, /*contents=*/true);
    if (problem.empty()) {
      result.dir = dir;
      return result;
    }
    result.corrupt.push_back({dir, problem});
  }
  return result;
}

std::string set_aside_corrupt_checkpoint(const std::string& dir) {
  std::string aside = dir + kCorruptSuffix;
  for (int n = 2; fs::exists(aside); ++n) aside = dir + kCorruptSuffix + "-" + std::to_string(n);
  fs::rename(dir, aside);
  io::fsync_directory(fs::path(dir).parent_path().string());
  return aside;
}

OptimizerCheckpoint read_optimizer_checkpoint(const std::string& dir) {
  const std::string path = (fs::path(dir) / "optimizer.safetensors").string();
  io::SafetensorsReader reader(path);
  OptimizerCheckpoint result;
  for (const auto& entry : reader.entries()) {
    if (entry.name == kRngTensor) {
      result.rng_state = reader.read(entry.name);
    } else {
      result.tensors[entry.name] = reader.read(entry.name);
    }
  }
  NEXTN_CHECK(result.rng_state.defined(), "'", path, "' lacks ", kRngTensor);
  auto steps = reader.metadata().find("optimizer_steps");
  NEXTN_CHECK(steps != reader.metadata().end(), "'", path, "' lacks the optimizer_steps metadata");
  try {
    result.steps = std::stoll(steps->second);
  } catch (const std::exception&) {
    fail("'", path, "': optimizer_steps '", steps->second, "' is not an integer");
  }
  return result;
}

TrainerState read_trainer_state(const std::string& dir) {
  const std::string path = (fs::path(dir) / "trainer_state.json").string();
  const nlohmann::json state = io::parse_json_rejecting_duplicate_keys(io::read_file(path), "'" + path + "'");
  try {
    return trainer_state_from_json(state);
  } catch (const Error& e) {
    fail("'", path, "': ", e.what());
  }
}

void restore_cpu_rng(const torch::Tensor& rng_state) {
  at::Generator generator = torch::globalContext().defaultGenerator(torch::kCPU);  // a handle to the global one
  generator.set_state(rng_state);
}

TrainerState load_run_checkpoint(const std::string& dir, DeepSeekV3Impl& model, AdamW& optimizer) {
  load_weights(model, dir);
  OptimizerCheckpoint saved = read_optimizer_checkpoint(dir);
  optimizer.load_state(saved.tensors, saved.steps);
  restore_cpu_rng(saved.rng_state);
  return read_trainer_state(dir);
}

std::string resolve_model_dir(const std::string& path) {
  if (io::file_exists((fs::path(path) / "config.json").string())) return path;
  if (auto latest = latest_run_checkpoint(path)) return *latest;
  fail("'", path, "' is neither a model directory (no config.json) nor a run directory with checkpoints");
}

void remove_incomplete_checkpoints(const std::string& run_dir) {
  fs::path dir = checkpoints_dir(run_dir);
  if (!fs::exists(dir)) return;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kTempPrefix, 0) == 0 || name.rfind(kDeletePrefix, 0) == 0) fs::remove_all(entry.path());
  }
}

}  // namespace nextn
