// The trainer end to end on a tiny real dataset: non-finite steps, bad input, and runs killed
// with SIGKILL or stopped with SIGTERM that resume to exactly the uninterrupted result.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "nextn/device/cpu_gemm.h"
#include "nextn/kernels/onednn_sgemm.h"
#include "nextn/checkpoint/hf_checkpoint.h"
#include "nextn/io/checkpoint_shards.h"
#include "nextn/io/safetensors.h"
#include "nextn/training/run_checkpoint.h"
#include "nextn/training/trainer.h"
#include "tiny_corpus.h"

namespace nextn {
namespace {

namespace fs = std::filesystem;
using testing::spawn_nextn;
using testing::TempDir;
using testing::tiny_corpus;
using testing::tiny_training_config;
using testing::wait_for_exit;
using testing::wait_for_path;

std::string write_tiny_config(const TempDir& dir) {
  std::string path = dir.file("tiny384.json");
  save_model_config(tiny_training_config(), path);
  return path;
}

TrainOptions tiny_options(const TempDir& dir, const std::string& run) {
  TrainOptions o;
  o.config_path = write_tiny_config(dir);
  o.data_dir = tiny_corpus().dataset_dir;
  o.run_dir = dir.file(run);
  o.batch_size = 4;
  o.seq_len = 32;
  o.steps = 6;
  o.warmup_steps = 2;
  o.lr = 3e-3;
  o.eval_every = 0;
  o.eval_batches = 2;
  o.checkpoint_every = 2;
  o.keep_checkpoints = 10;
  o.log_every = 1;
  return o;
}

// Every tensor of a checkpoint's model and optimizer state.
std::map<std::string, torch::Tensor> checkpoint_tensors(const std::string& dir) {
  std::map<std::string, torch::Tensor> all;
  io::CheckpointShards model(dir);
  for (const auto& name : model.names()) all["model/" + name] = model.read(name);
  io::SafetensorsReader optimizer(dir + "/optimizer.safetensors");
  for (const auto& e : optimizer.entries()) all["optimizer/" + e.name] = optimizer.read(e.name);
  return all;
}

void expect_same_tensors(const std::map<std::string, torch::Tensor>& a, const std::map<std::string, torch::Tensor>& b,
                         const std::string& skip_prefix = "") {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, tensor] : a) {
    if (!skip_prefix.empty() && name.rfind(skip_prefix, 0) == 0) continue;
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_TRUE(torch::equal(tensor, b.at(name))) << name << " differs";
  }
}

std::vector<nlohmann::json> train_records(const std::string& run_dir) {
  std::vector<nlohmann::json> records;
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j["type"] == "train") records.push_back(j);
  }
  return records;
}

TEST(Trainer, NonFiniteStepIsSkippedAndCountedAndChangesNothing) {
  TempDir dir("trainer_nan");
  TrainOptions clean = tiny_options(dir, "clean");
  clean.steps = 2;
  train(clean, false);
  TrainOptions poisoned = tiny_options(dir, "poisoned");
  poisoned.steps = 3;
  poisoned.checkpoint_every = 0;
  poisoned.inject_nan_step = 3;
  TrainResult result = train(poisoned, false);
  auto records = train_records(poisoned.run_dir);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_FALSE(records[1]["skipped"].get<bool>());
  EXPECT_TRUE(records[2]["skipped"].get<bool>());
  EXPECT_EQ(records[2]["skipped_steps"].get<int64_t>(), 1);
  // Step 3 changed no weight, no expert bias, no optimizer moment (the RNG state is not compared:
  // evaluation ran at different points).
  expect_same_tensors(checkpoint_tensors(clean.run_dir + "/checkpoints/step-00000002"),
                      checkpoint_tensors(result.last_checkpoint), "optimizer/rng");
  auto state = nlohmann::json::parse(io::read_file(result.last_checkpoint + "/trainer_state.json"));
  EXPECT_EQ(state["skipped_steps"].get<int64_t>(), 1);
}

TEST(Trainer, ATimeBudgetEndsTheRunWithAnEvaluationAndACheckpoint) {
  TempDir dir("trainer_budget");
  TrainOptions o = tiny_options(dir, "budget");
  o.minutes = 1e-6;  // spent before the first step ends
  o.steps = 50;
  o.checkpoint_every = 0;
  TrainResult result = train(o, false);
  EXPECT_TRUE(result.stopped_by_time_budget);
  EXPECT_EQ(result.steps_done, 1);
  std::vector<nlohmann::json> evals;
  std::ifstream in(o.run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["type"] == "eval") evals.push_back(j);
  }
  ASSERT_EQ(evals.size(), 1u);
  EXPECT_EQ(evals[0]["step"].get<int64_t>(), 1);
  EXPECT_TRUE(fs::exists(o.run_dir + "/checkpoints/step-00000001"));
}

TEST(Trainer, AResumedRunKeepsTheDraftVocabularyOfItsNewestCheckpoint) {
  TempDir dir("trainer_carry");
  TrainOptions o = tiny_options(dir, "run");
  o.steps = 4;
  train(o, false);
  fs::remove_all(o.run_dir + "/checkpoints/step-00000004");  // as if killed before step 4's checkpoint
  // What `nextn draft-vocab --model <run>` leaves in the newest checkpoint (the copy is by bytes).
  const std::string ranking = "{\"ranked by\": \"a test\"}\n";
  io::write_file_atomic(o.run_dir + "/checkpoints/step-00000002/draft_vocab.json", ranking);
  o.keep_checkpoints = 1;
  TrainResult result = train(o, true);
  ASSERT_EQ(result.last_checkpoint, o.run_dir + "/checkpoints/step-00000004");
  EXPECT_FALSE(fs::exists(o.run_dir + "/checkpoints/step-00000002"));  // keep 1: the source is gone
  EXPECT_EQ(io::read_file(result.last_checkpoint + "/draft_vocab.json"), ranking);
  // An export carries it with the drafters, not without them.
  std::string output;
  ASSERT_EQ(testing::run_nextn("export --allow-reference-differences --model " + o.run_dir + " --out " +
                                   dir.file("exported"), dir.path(), output), 0) << output;
  EXPECT_EQ(io::read_file(dir.file("exported") + "/draft_vocab.json"), ranking);
  ASSERT_EQ(testing::run_nextn("export --allow-reference-differences --drop-mtp --model " + o.run_dir + " --out " +
                                   dir.file("main-only"), dir.path(), output), 0) << output;
  EXPECT_FALSE(fs::exists(dir.file("main-only") + "/draft_vocab.json"));
  // A run that never had one gets none.
  TrainOptions fresh = tiny_options(dir, "fresh");
  fresh.steps = 2;
  EXPECT_FALSE(fs::exists(train(fresh, false).last_checkpoint + "/draft_vocab.json"));
}

TEST(Trainer, TooManyNonFiniteStepsStopWithTheLastGoodCheckpointKept) {
  TempDir dir("trainer_diverged");
  TrainOptions o = tiny_options(dir, "run");
  o.checkpoint_every = 1;
  o.inject_nan_step = 3;
  o.max_bad_steps = 1;
  try {
    train(o, false);
    FAIL() << "expected the run to stop";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("step-00000002"), std::string::npos) << e.what();
  }
  EXPECT_EQ(latest_run_checkpoint(o.run_dir).value(), o.run_dir + "/checkpoints/step-00000002");
  load_model(o.run_dir + "/checkpoints/step-00000002");  // loadable
}

void expect_train_error(const TrainOptions& o, bool resume, const std::string& fragment) {
  try {
    train(o, resume);
    FAIL() << "expected an error mentioning " << fragment;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(Trainer, BadInputFailsBeforeAnyWork) {
  TempDir dir("trainer_bad_input");
  TrainOptions o = tiny_options(dir, "run");
  TrainOptions missing_data = o;
  missing_data.data_dir = dir.file("no-such-dataset");
  expect_train_error(missing_data, false, "no-such-dataset");
  EXPECT_FALSE(fs::exists(o.run_dir + "/checkpoints"));

  ModelConfig small_vocab = tiny_training_config();
  small_vocab.vocab_size = 100;
  TrainOptions wrong_vocab = o;
  wrong_vocab.config_path = dir.file("small_vocab.json");
  save_model_config(small_vocab, wrong_vocab.config_path);
  expect_train_error(wrong_vocab, false, "vocab_size");

  TrainOptions unwritable = o;
  unwritable.run_dir = "/proc/nextn-run";
  expect_train_error(unwritable, false, "/proc/nextn-run");

  expect_train_error(o, /*resume=*/true, "no checkpoint");
  train(o, false);
  expect_train_error(o, false, "--resume");  // a second fresh run into the same directory
  TrainOptions other_config = o;
  other_config.config_path = dir.file("other.json");
  ModelConfig other = tiny_training_config();
  other.hidden_size = 48;
  save_model_config(other, other_config.config_path);
  expect_train_error(other_config, true, "does not match");
}

// ---- real processes -------------------------------------------------------------------------

std::vector<std::string> train_args(const TrainOptions& o, int64_t steps) {
  return {"train", "--config", o.config_path, "--data", o.data_dir, "--run", o.run_dir, "--steps", std::to_string(steps),
          "--batch-size", "4", "--seq-len", "32", "--warmup", "5", "--lr", "3e-3", "--checkpoint-every", "5",
          "--keep-checkpoints", "3", "--eval-every", "20", "--eval-batches", "2", "--threads", "1"};
}

// A run killed with SIGKILL after its checkpoint at step 15 and resumed ends with the same losses
// and the same checkpoint, bit for bit, as the same run uninterrupted.
void expect_killed_run_resumes_exactly(const TempDir& dir, const std::vector<std::string>& extra_args) {
  const int64_t steps = 60;
  TrainOptions straight = tiny_options(dir, "straight");
  TrainOptions killed = tiny_options(dir, "killed");
  auto args_of = [&](const TrainOptions& o) {
    auto args = train_args(o, steps);
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    return args;
  };
  ASSERT_EQ(WEXITSTATUS(wait_for_exit(spawn_nextn(args_of(straight), dir.file("straight.log")))), 0)
      << io::read_file(dir.file("straight.log"));

  pid_t pid = spawn_nextn(args_of(killed), dir.file("killed.log"));
  ASSERT_TRUE(wait_for_path(killed.run_dir + "/checkpoints/step-00000015", pid, 120))
      << io::read_file(dir.file("killed.log"));
  kill(pid, SIGKILL);
  int status = wait_for_exit(pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it could be killed";
  ASSERT_LT(latest_run_checkpoint(killed.run_dir).value(), killed.run_dir + "/checkpoints/step-00000060");

  auto resume_args = args_of(killed);
  resume_args.push_back("--resume");
  ASSERT_EQ(WEXITSTATUS(wait_for_exit(spawn_nextn(resume_args, dir.file("resumed.log")))), 0)
      << io::read_file(dir.file("resumed.log"));

  auto a = train_records(straight.run_dir), b = train_records(killed.run_dir);
  ASSERT_EQ(a.size(), static_cast<size_t>(steps));
  ASSERT_EQ(b.size(), static_cast<size_t>(steps));
  for (int64_t s = 0; s < steps; ++s) {
    EXPECT_EQ(a[s]["step"], b[s]["step"]);
    EXPECT_EQ(a[s]["loss"].get<double>(), b[s]["loss"].get<double>()) << "step " << s + 1;  // bitwise
    EXPECT_EQ(a[s]["mtp_loss"], b[s]["mtp_loss"]) << "step " << s + 1;
    EXPECT_EQ(a[s]["max_vio_layers"], b[s]["max_vio_layers"]) << "step " << s + 1;
  }
  expect_same_tensors(checkpoint_tensors(straight.run_dir + "/checkpoints/step-00000060"),
                      checkpoint_tensors(killed.run_dir + "/checkpoints/step-00000060"));
}

TEST(Trainer, KilledRunResumesToExactlyTheUninterruptedResult) {
  TempDir dir("trainer_kill");
  expect_killed_run_resumes_exactly(dir, {});
  // The run records the library of its fp32 products (oneDNN where built), and a resume on
  // another would not continue the same run: refused, naming both.
  const std::string recorded = to_string(default_training_fp32_gemm());
  auto run_json = nlohmann::json::parse(io::read_file(dir.file("killed") + "/run.json"));
  EXPECT_EQ(run_json.at("fp32_gemm"), recorded);
  EXPECT_NE(io::read_file(dir.file("straight.log")).find("fp32 products " + recorded), std::string::npos);
  const std::string other_gemm = recorded == "onednn" ? "blas" : "onednn";
  if (other_gemm == "onednn" && !kernels::onednn_sgemm_built()) return;
  auto other = train_args(tiny_options(dir, "killed"), 60);
  other.insert(other.end(), {"--fp32-gemm", other_gemm, "--resume"});
  EXPECT_NE(WEXITSTATUS(wait_for_exit(spawn_nextn(other, dir.file("other.log")))), 0);
  const std::string log = io::read_file(dir.file("other.log"));
  EXPECT_NE(log.find("--fp32-gemm is \"" + other_gemm + "\" but the run was started with \"" + recorded + "\""),
            std::string::npos)
      << log;
}

TEST(Trainer, Bf16RunRecordsItsPrecisionAndResumesBitwise) {
  TempDir dir("trainer_kill_bf16");
  expect_killed_run_resumes_exactly(dir, {"--precision", "bf16"});
  const std::string run_dir = dir.file("killed");
  auto run_json = nlohmann::json::parse(io::read_file(run_dir + "/run.json"));
  EXPECT_EQ(run_json.at("precision"), "bf16");
  EXPECT_NE(io::read_file(dir.file("straight.log")).find("precision bf16"), std::string::npos);
  // Master weights and optimizer state stay fp32: so does the checkpoint.
  for (const auto& [name, tensor] : checkpoint_tensors(run_dir + "/checkpoints/step-00000060")) {
    if (tensor.is_floating_point()) {
      EXPECT_EQ(tensor.scalar_type(), torch::kFloat) << name;
    }
  }
  // Resuming in another precision would not continue the same run: refused, naming both.
  auto other = train_args(tiny_options(dir, "killed"), 60);
  other.insert(other.end(), {"--precision", "fp32", "--resume"});
  const int status = wait_for_exit(spawn_nextn(other, dir.file("other.log")));
  EXPECT_NE(WEXITSTATUS(status), 0);
  const std::string log = io::read_file(dir.file("other.log"));
  EXPECT_NE(log.find("--precision is \"fp32\" but the run was started with \"bf16\""), std::string::npos) << log;
}

TEST(Trainer, SigtermFinishesTheStepWritesACheckpointAndExitsZero) {
  TempDir dir("trainer_sigterm");
  TrainOptions o = tiny_options(dir, "run");
  pid_t pid = spawn_nextn(train_args(o, 100000), dir.file("run.log"));
  ASSERT_TRUE(wait_for_path(o.run_dir + "/checkpoints/step-00000010", pid, 120)) << io::read_file(dir.file("run.log"));
  kill(pid, SIGTERM);
  int status = wait_for_exit(pid);
  ASSERT_TRUE(WIFEXITED(status)) << io::read_file(dir.file("run.log"));
  EXPECT_EQ(WEXITSTATUS(status), 0) << io::read_file(dir.file("run.log"));
  // The newest checkpoint is the step the run stopped at, not an older periodic one.
  auto records = train_records(o.run_dir);
  const std::string expected = o.run_dir + "/checkpoints/" + checkpoint_dir_name(records.back()["step"].get<int64_t>());
  EXPECT_EQ(latest_run_checkpoint(o.run_dir).value(), expected);
  EXPECT_NE(io::read_file(dir.file("run.log")).find("stopped by signal"), std::string::npos);
}

}  // namespace
}  // namespace nextn
