// Training checkpoints: <run>/checkpoints/step-NNNNNNNN/ holds the model in the HF layout (fp32,
// so a resumed run continues bit for bit), the optimizer state and RNG (optimizer.safetensors),
// the trainer's counters and data-loader position (trainer_state.json) and the tokenizer.
// A checkpoint is written into a temporary directory, every file fsynced, then renamed into
// place: a kill at any instant leaves the previous checkpoint intact and no partial one visible.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nextn/checkpoint/hf_tensor_map.h"
#include "nextn/model/deepseek_v3.h"
#include "nextn/training/adamw.h"

namespace nextn {

struct TrainerState {
  int64_t step = 0;              // optimizer steps done (including skipped ones)
  int64_t total_steps = 0;
  int64_t tokens_seen = 0;
  int64_t skipped_steps = 0;
  int64_t consecutive_bad_steps = 0;
  double elapsed_seconds = 0;    // training time before this process
  nlohmann::json loader_state;   // the data loader's position
  std::string dataset_id;        // identifies the dataset the run trains on
  // Windows per optimizer step over all ranks (ranks x micro-batch x accumulation): a run resumed
  // with another world size keeps it by changing the micro-batch. 0 in checkpoints from before.
  int64_t global_batch = 0;
};

nlohmann::json to_json(const TrainerState& state);
TrainerState trainer_state_from_json(const nlohmann::json& json);

std::string checkpoints_dir(const std::string& run_dir);
std::string checkpoint_dir_name(int64_t step);  // "step-00000100"

// Writes the checkpoint of `state.step`; removes all but the newest `keep` afterwards. The newest
// existing checkpoint's draft_vocab.json (a ranking of the run's tokens) is carried into the new one.
// tokenizer_json: a file copied into the checkpoint so it is self-contained (may be empty).
std::string save_run_checkpoint(const std::string& run_dir, DeepSeekV3Impl& model, const AdamW& optimizer,
                                const TrainerState& state, const std::string& tokenizer_json, int64_t keep);

// The same in two phases, for a distributed run: prepare writes everything into a temporary
// directory (the caller then checks that every rank is still there), commit renames it into place
// and prunes old checkpoints, discard removes it. full_experts and optimizer_tensors carry what an
// expert-parallel run gathered from the ranks holding the other experts.
struct PreparedCheckpoint {
  std::string run_dir, temp_dir, final_dir;
};
PreparedCheckpoint prepare_run_checkpoint(const std::string& run_dir, DeepSeekV3Impl& model,
                                          const FullExperts& full_experts,
                                          const std::vector<std::pair<std::string, torch::Tensor>>& optimizer_tensors,
                                          int64_t optimizer_steps, const TrainerState& state,
                                          const std::string& tokenizer_json);
std::string commit_run_checkpoint(const PreparedCheckpoint& prepared, int64_t keep);
void discard_run_checkpoint(const PreparedCheckpoint& prepared);

// The newest checkpoint of the run (step-N directory), if any, and all of them, oldest first.
// Listed whatever their state: one whose files do not match its checksums.json was damaged after
// it was written (a kill never leaves one), and is reported where it is used: load_model refuses
// it, latest_valid_run_checkpoint names it. Temporary, half-removed and set-aside directories
// (.tmp-*, .del-*, step-N.corrupt) are not checkpoints. Contents are not hashed here.
std::optional<std::string> latest_run_checkpoint(const std::string& run_dir);
std::vector<std::string> run_checkpoints(const std::string& run_dir);

// The newest checkpoint whose files all match their checksums (io/file_checksums.h), and the newer
// ones that did not (a file changed, resized or missing, an unreadable checksums.json), each with
// its problems. dir is empty when none is valid.
struct ValidCheckpoint {
  std::string dir;
  std::vector<std::pair<std::string, std::string>> corrupt;  // (directory, what is wrong)
};
ValidCheckpoint latest_valid_run_checkpoint(const std::string& run_dir);

// Renames a corrupt checkpoint to step-N.corrupt, out of the checkpoints a run lists (kept for
// the user to look at; never deleted). Returns the new path.
std::string set_aside_corrupt_checkpoint(const std::string& dir);

// Loads model weights, optimizer state and RNG from `dir` and returns the trainer state.
TrainerState load_run_checkpoint(const std::string& dir, DeepSeekV3Impl& model, AdamW& optimizer);

// The parts of a checkpoint besides the weights (hf_checkpoint's load_weights), read separately
// where the optimizer is built after the model is sharded.
struct OptimizerCheckpoint {
  std::map<std::string, torch::Tensor> tensors;  // "<param>.exp_avg", "<param>.exp_avg_sq"
  int64_t steps = 0;
  torch::Tensor rng_state;  // the CPU generator's
};
OptimizerCheckpoint read_optimizer_checkpoint(const std::string& dir);
TrainerState read_trainer_state(const std::string& dir);
void restore_cpu_rng(const torch::Tensor& rng_state);

// A model directory as users name it: a directory with config.json, or a run directory, meaning
// its newest checkpoint. nextn::Error when it is neither.
std::string resolve_model_dir(const std::string& path);

// Removes temporary directories left by a crash during a save or a removal.
void remove_incomplete_checkpoints(const std::string& run_dir);

}  // namespace nextn
