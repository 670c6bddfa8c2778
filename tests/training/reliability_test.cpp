// What hostile but fair use found (issue 22), each as a test that failed before its fix: timed
// runs resumed before calibration, flipped bits in checkpoints, half-deleted checkpoints, data that
// cannot be evaluated, a model paired with another tokenizer's data, thread counts that change
// the arithmetic on resume, relative paths in run.json, sizes that would be allocated instead of
// refused, and options accepted silently.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "nextn/checkpoint/hf_checkpoint.h"
#include "nextn/data/token_dataset.h"
#include "nextn/io/atomic_file.h"
#include "nextn/io/file_checksums.h"
#include "nextn/io/safetensors.h"
#include "nextn/training/evaluator.h"
#include "nextn/training/metrics_log.h"
#include "nextn/training/run_checkpoint.h"
#include "nextn/training/train_options.h"
#include "nextn/util/sha256.h"
#include "tiny_corpus.h"

namespace nextn {
namespace {
namespace reliability {

namespace fs = std::filesystem;
using testing::TempDir;
using testing::tiny_corpus;

struct Result {
  int code = 0;
  std::string output;
};

Result nextn(const TempDir& dir, const std::string& args) {
  Result r;
  r.code = testing::run_nextn(args, dir.path(), r.output);
  return r;
}

// The same, run from the directory `cwd`.
Result nextn_in(const TempDir& dir, const std::string& cwd, const std::string& args) {
  Result r;
  const std::string log = dir.file("command.log");
  const std::string command = "cd '" + cwd + "' && " + NEXTN_BINARY_PATH + " " + args + " > '" + log + "' 2>&1";
  const int status = std::system(command.c_str());
  r.output = io::read_file(log);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string write_json(const TempDir& dir, const std::string& name, const nlohmann::json& j) {
  io::write_file_atomic(dir.file(name), j.dump(2));
  return dir.file(name);
}

nlohmann::json tiny_config_json() {
  nlohmann::json config = testing::preset_json("tiny");
  config["vocab_size"] = 384;
  return config;
}

std::string train_command(const std::string& config, const std::string& data, const std::string& run,
                          const std::string& extra) {
  return "train --config '" + config + "' --data '" + data + "' --run '" + run +
         "' --batch-size 4 --seq-len 32 --warmup 2 --lr 3e-3 --eval-every 0 --eval-batches 2 --keep-checkpoints 5 " +
         extra;
}

std::vector<nlohmann::json> records_of(const std::string& run_dir, const std::string& type) {
  std::vector<nlohmann::json> records;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["type"] == type) records.push_back(j);
  }
  return records;
}

void expect_contains(const Result& r, const std::string& fragment) {
  EXPECT_NE(r.output.find(fragment), std::string::npos) << "output lacks '" << fragment << "':\n" << r.output;
}

// A trained 6-step run with checkpoints at steps 2, 4 and 6, made once per process.
const std::string& six_step_run() {
  static TempDir dir("reliability_run");
  static const std::string run = [] {
    const std::string config = write_json(dir, "tiny.json", tiny_config_json());
    Result r = nextn(dir, train_command(config, tiny_corpus().dataset_dir, dir.file("run"),
                                        "--steps 6 --checkpoint-every 2 --threads 1"));
    EXPECT_EQ(r.code, 0) << r.output;
    return dir.file("run");
  }();
  return run;
}

std::string checkpoint(const std::string& run, int64_t step) {
  return checkpoints_dir(run) + "/" + checkpoint_dir_name(step);
}

void copy_run(const std::string& from, const std::string& to) {
  fs::copy(from, to, fs::copy_options::recursive);
}

void flip_bit(const std::string& path, int64_t offset_from_end) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekg(-offset_from_end, std::ios::end);
  char byte = 0;
  file.read(&byte, 1);
  byte ^= 0x10;
  file.seekp(-offset_from_end, std::ios::end);
  file.write(&byte, 1);
}

// ---- item 4: checksums ------------------------------------------------------------------------

TEST(Reliability, EveryCheckpointListsTheChecksumsOfItsFiles) {
  const std::string step6 = checkpoint(six_step_run(), 6);
  const auto listing = nlohmann::json::parse(io::read_file(step6 + "/checksums.json"));
  for (const char* name : {"config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json",
                           "tokenizer.json"}) {
    ASSERT_TRUE(listing["files"].contains(name)) << name;
    // The recorded hash is the file's, by an independent reading.
    EXPECT_EQ(listing["files"][name]["sha256"], sha256_hex(io::read_file(step6 + "/" + name))) << name;
    EXPECT_EQ(listing["files"][name]["bytes"], fs::file_size(step6 + "/" + name)) << name;
  }
  EXPECT_TRUE(io::verify_checksums(step6).ok());
}

TEST(Reliability, AFlippedBitIsFoundByVerifyByLoadingAndByResume) {
  TempDir dir("reliability_flip");
  const std::string run = dir.file("run");
  copy_run(six_step_run(), run);
  const std::string original = io::read_file(checkpoint(run, 6) + "/model.safetensors");
  flip_bit(checkpoint(run, 6) + "/model.safetensors", 100);

  Result verify = nextn(dir, "checkpoint verify '" + run + "'");
  EXPECT_EQ(verify.code, 1) << verify.output;
  expect_contains(verify, "CORRUPT " + checkpoint(run, 6));
  expect_contains(verify, "model.safetensors's SHA-256 differs");
  expect_contains(verify, "ok " + checkpoint(run, 4));

  Result generate = nextn(dir, "generate --model '" + run + "' --prompt x --max-new-tokens 2");
  EXPECT_EQ(generate.code, 1) << generate.output;
  expect_contains(generate, "is corrupt: model.safetensors's SHA-256 differs");
  EXPECT_EQ(nextn(dir, "generate --no-verify --model '" + run + "' --prompt x --max-new-tokens 2").code, 0);

  // --resume skips the corrupt checkpoint, sets it aside, and recomputes step 6 exactly.
  Result resume = nextn(dir, "train --run '" + run + "' --resume");
  ASSERT_EQ(resume.code, 0) << resume.output;
  expect_contains(resume, "set aside as '" + checkpoint(run, 6) + ".corrupt'");
  expect_contains(resume, "resuming from " + checkpoint(run, 4));
  EXPECT_TRUE(fs::exists(checkpoint(run, 6) + ".corrupt/model.safetensors"));
  EXPECT_EQ(io::read_file(checkpoint(run, 6) + "/model.safetensors"), original);
  EXPECT_EQ(nextn(dir, "checkpoint verify '" + run + "'").code, 0);
}

TEST(Reliability, ResumeRefusesWhenNoCheckpointIsIntact) {
  TempDir dir("reliability_all_corrupt");
  const std::string run = dir.file("run");
  copy_run(six_step_run(), run);
  for (int64_t step : {2, 4, 6}) flip_bit(checkpoint(run, step) + "/optimizer.safetensors", 8);
  Result resume = nextn(dir, "train --run '" + run + "' --resume");
  EXPECT_EQ(resume.code, 1) << resume.output;
  expect_contains(resume, "has no intact checkpoint");
  expect_contains(resume, "optimizer.safetensors's SHA-256 differs");
}

// ---- item 9: half-deleted checkpoints -----------------------------------------------------------

// A kill cannot leave a step-N directory with files missing (checkpoints are renamed into place,
// and renamed away before their files are deleted): one that lacks files was damaged afterwards.
// It is listed, so that verify reports it, and a resumed run sets it aside like any corrupt one.
TEST(Reliability, AHalfDeletedCheckpointIsSetAsideAndNeverResumedFrom) {
  TempDir dir("reliability_half_deleted");
  const std::string run = dir.file("run");
  copy_run(six_step_run(), run);
  fs::remove(checkpoint(run, 6) + "/model.safetensors");
  fs::remove(checkpoint(run, 4) + "/checksums.json");  // and one without its listing either
  fs::remove(checkpoint(run, 4) + "/optimizer.safetensors");
  EXPECT_EQ(run_checkpoints(run), (std::vector<std::string>{checkpoint(run, 2), checkpoint(run, 4), checkpoint(run, 6)}));
  const ValidCheckpoint valid = latest_valid_run_checkpoint(run);
  EXPECT_EQ(valid.dir, checkpoint(run, 2));
  ASSERT_EQ(valid.corrupt.size(), 2u);
  EXPECT_NE(valid.corrupt[0].second.find("model.safetensors is missing"), std::string::npos) << valid.corrupt[0].second;
  EXPECT_NE(valid.corrupt[1].second.find("has no checksums.json and lacks optimizer.safetensors"), std::string::npos)
      << valid.corrupt[1].second;

  // Removal renames first: a directory being deleted has left the step-N names.
  fs::rename(checkpoint(run, 6), checkpoints_dir(run) + "/.del-step-00000006-99");
  Result resume = nextn(dir, "train --run '" + run + "' --resume");
  ASSERT_EQ(resume.code, 0) << resume.output;
  expect_contains(resume, "set aside as '" + checkpoint(run, 4) + ".corrupt'");
  expect_contains(resume, "resuming from " + checkpoint(run, 2));
  EXPECT_TRUE(fs::exists(checkpoint(run, 4) + ".corrupt/model.safetensors"));
  EXPECT_FALSE(fs::exists(checkpoints_dir(run) + "/.del-step-00000006-99"));
  EXPECT_TRUE(io::verify_checksums(checkpoint(run, 6)).ok());
}

// Damage other than a flipped bit (a truncated file, a deleted file, an unreadable listing) is
// found as a flipped bit is: it used to be passed over in silence, verify saying nothing and
// loading and resuming taking the checkpoint before it.
TEST(Reliability, EveryKindOfDamageIsFoundByVerifyByLoadingAndByResume) {
  struct Damage {
    std::string name;
    std::function<void(const std::string&)> apply;  // to a checkpoint directory
    std::string problem;                            // what verify and loading say
  };
  const std::vector<Damage> damages = {
      {"truncated", [](const std::string& c) { fs::resize_file(c + "/model.safetensors", 1000); },
       "model.safetensors has 1000 bytes, "},
      {"deleted", [](const std::string& c) { fs::remove(c + "/trainer_state.json"); }, "trainer_state.json is missing"},
      {"listing", [](const std::string& c) { io::write_file_atomic(c + "/checksums.json", "{\"format\": "); },
       "checksums.json' is not valid JSON"},
  };
  for (const Damage& damage : damages) {
    SCOPED_TRACE(damage.name);
    TempDir dir("reliability_damage_" + damage.name);
    const std::string run = dir.file("run");
    copy_run(six_step_run(), run);
    damage.apply(checkpoint(run, 6));

    Result verify = nextn(dir, "checkpoint verify '" + run + "'");
    EXPECT_EQ(verify.code, 1) << verify.output;
    expect_contains(verify, "CORRUPT " + checkpoint(run, 6));
    expect_contains(verify, damage.problem);
    expect_contains(verify, "ok " + checkpoint(run, 4));

    for (const std::string& command : {"generate --model '" + run + "' --prompt x --max-new-tokens 2",
                                       "export --model '" + run + "' --out '" + dir.file("out") + "'"}) {
      Result load = nextn(dir, command);
      EXPECT_EQ(load.code, 1) << command << "\n" << load.output;
      expect_contains(load, "'" + checkpoint(run, 6) + "' is corrupt: ");
      expect_contains(load, damage.problem);
      expect_contains(load, "--no-verify loads it anyway");
    }
    EXPECT_FALSE(fs::exists(dir.file("out")));

    Result resume = nextn(dir, "train --run '" + run + "' --resume");
    ASSERT_EQ(resume.code, 0) << resume.output;
    expect_contains(resume, "set aside as '" + checkpoint(run, 6) + ".corrupt'");
    expect_contains(resume, "resuming from " + checkpoint(run, 4));
    EXPECT_TRUE(fs::exists(checkpoint(run, 6) + ".corrupt/config.json"));
    EXPECT_EQ(nextn(dir, "checkpoint verify '" + run + "'").code, 0);
  }
}

// Exports carry no checksums by design (users edit them): verify says there is nothing to check
// instead of failing; a training checkpoint without its checksums.json is still unverifiable.
TEST(Reliability, VerifyOfAnExportSaysItCarriesNoChecksums) {
  TempDir dir("reliability_verify_export");
  const std::string run = six_step_run();
  ASSERT_EQ(nextn(dir, "export --model '" + run + "' --out '" + dir.file("hf") + "'").code, 0);
  Result verify = nextn(dir, "checkpoint verify '" + dir.file("hf") + "'");
  EXPECT_EQ(verify.code, 0) << verify.output;
  expect_contains(verify, "nothing to verify in " + dir.file("hf") + ": a model directory without checksums.json");

  copy_run(checkpoint(run, 6), dir.file("step"));
  fs::remove(dir.file("step/checksums.json"));
  Result legacy = nextn(dir, "checkpoint verify '" + dir.file("step") + "'");
  EXPECT_EQ(legacy.code, 1) << legacy.output;
  expect_contains(legacy, "unverifiable " + dir.file("step"));
}

// ---- item 3: a timed run killed before calibrating ----------------------------------------------

TEST(Reliability, ATimedRunKilledBeforeCalibrationKeepsItsBudgetAndSchedule) {
  TempDir dir("reliability_timed");
  const std::string config = write_json(dir, "tiny.json", tiny_config_json());
  const std::string run = dir.file("run");
  const double minutes = 0.1;
  Result killed = nextn(dir, train_command(config, tiny_corpus().dataset_dir, run,
                                           "--minutes 0.1 --checkpoint-every 2 --threads 1 --inject-fault 0:6:KILL"));
  ASSERT_NE(killed.code, 0) << killed.output;
  ASSERT_EQ(latest_run_checkpoint(run).value(), checkpoint(run, 4));
  EXPECT_GE(read_trainer_state(checkpoint(run, 4)).total_steps, kCalibratingSteps);

  Result resumed = nextn(dir, "train --run '" + run + "' --resume");
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  expect_contains(resumed, "time budget");
  const auto steps = records_of(run, "train");
  ASSERT_FALSE(steps.empty());
  const auto& last = steps.back();
  EXPECT_LT(last["total_steps"].get<int64_t>(), kCalibratingSteps);
  // Ended by the step count computed from the budget, or by the clock when steps got slower;
  // either way the cosine schedule ran most of its course (an unbounded total kept it at 3e-3).
  EXPECT_GE(last["step"].get<int64_t>() * 2, last["total_steps"].get<int64_t>());
  EXPECT_LT(last["lr"].get<double>(), 3e-3 * 0.5) << "the learning rate decayed";
  EXPECT_LT(last["elapsed_seconds"].get<double>(), minutes * 60 + 3) << "the budget spans both processes";
}

// ---- item 2: a validation split with no window --------------------------------------------------

TEST(Reliability, DataWhoseValidationSplitHasNoWindowTrainsWithAWarningAndKeepsItsSteps) {
  TempDir dir("reliability_short_validation");
  const std::string corpus = dir.file("corpus");
  fs::create_directories(corpus);
  for (int i = 0; i < 20; ++i) {  // document 19 of 20 is the validation split at fraction 0.05
    io::write_file_atomic(corpus + "/m" + std::to_string(100 + i) + ".py",
                          "def f(x):\n    return x + " + std::to_string(i) + "\n\n\nprint(f(1), f(2), f(3))\n");
  }
  const std::string tokenizer = tiny_corpus().dataset_dir + "/tokenizer.json";
  Result prepare = nextn(dir, "data prepare --input '" + corpus + "' --tokenizer '" + tokenizer + "' --output '" +
                                  dir.file("data") + "' --validation-fraction 0.05");
  ASSERT_EQ(prepare.code, 0) << prepare.output;
  const std::string config = write_json(dir, "tiny.json", tiny_config_json());
  Result train = nextn(dir, "train --config '" + config + "' --data '" + dir.file("data") + "' --run '" +
                                dir.file("run") + "' --steps 3 --batch-size 2 --seq-len 48 --threads 1");
  ASSERT_EQ(train.code, 0) << train.output;
  expect_contains(train, "this run is not evaluated");
  EXPECT_TRUE(fs::exists(checkpoint(dir.file("run"), 3)));
  EXPECT_TRUE(records_of(dir.file("run"), "eval").empty());
  EXPECT_EQ(records_of(dir.file("run"), "train").size(), 3u);
}

// ---- item 5 and 7: a model paired with another tokenizer's data -----------------------------------

TEST(Reliability, EvalRefusesADatasetMadeWithAnotherTokenizer) {
  TempDir dir("reliability_other_tokenizer");
  const std::string json_package = data::python_stdlib_corpus().inputs.at(0) + "/json";
  Result tokenizer = nextn(dir, "tokenizer train --input '" + json_package + "' --vocab-size 512 --output '" +
                                    dir.file("t512.json") + "'");
  ASSERT_EQ(tokenizer.code, 0) << tokenizer.output;
  Result prepare = nextn(dir, "data prepare --input '" + json_package + "' --tokenizer '" + dir.file("t512.json") +
                                  "' --output '" + dir.file("data512") + "' --validation-fraction 0.25");
  ASSERT_EQ(prepare.code, 0) << prepare.output;

  const std::string model = checkpoint(six_step_run(), 6);
  Result eval = nextn(dir, "eval --model '" + model + "' --data '" + dir.file("data512") + "'");
  EXPECT_EQ(eval.code, 1) << eval.output;
  expect_contains(eval, "dataset '" + dir.file("data512") + "' was made with another tokenizer than model '" + model);

  // A model directory without tokenizer.json: the ids past its vocabulary are named (they used to
  // end in libtorch's "index out of range in self").
  copy_run(model, dir.file("bare"));
  fs::remove(dir.file("bare/tokenizer.json"));
  Result bare = nextn(dir, "eval --no-verify --model '" + dir.file("bare") + "' --data '" + dir.file("data512") + "'");
  EXPECT_EQ(bare.code, 1) << bare.output;
  expect_contains(bare, "has token ids up to 511, past the vocabulary of model '" + dir.file("bare") + "' (vocab_size 384)");

  Result draft = nextn(dir, "draft-vocab --model '" + model + "' --data '" + dir.file("data512") + "'");
  EXPECT_EQ(draft.code, 1) << draft.output;
  expect_contains(draft, "was made with another tokenizer than model");
}

// ---- item 8 and 10: threads and paths kept by resume ---------------------------------------------

TEST(Reliability, ResumeKeepsTheThreadCountAndWorksFromAnotherDirectory) {
  TempDir dir("reliability_threads");
  write_json(dir, "tiny.json", tiny_config_json());
  const std::string corpus_root = fs::path(tiny_corpus().dataset_dir).parent_path().string();
  fs::copy(dir.file("tiny.json"), corpus_root + "/tiny-reliability.json", fs::copy_options::overwrite_existing);
  const std::string common = "--steps 10 --checkpoint-every 2 --threads 1";
  // Both runs name their inputs relative to the corpus folder.
  Result straight = nextn_in(dir, corpus_root, train_command("tiny-reliability.json", "dataset", dir.file("straight"), common));
  ASSERT_EQ(straight.code, 0) << straight.output;
  Result killed = nextn_in(dir, corpus_root, train_command("tiny-reliability.json", "dataset", dir.file("killed"),
                                                           common + " --inject-fault 0:6:KILL"));
  ASSERT_NE(killed.code, 0) << killed.output;
  const auto run_json = nlohmann::json::parse(io::read_file(dir.file("killed/run.json")));
  EXPECT_EQ(run_json["threads"], 1);
  EXPECT_EQ(run_json["data_dir"], tiny_corpus().dataset_dir);
  EXPECT_EQ(run_json["config_path"], corpus_root + "/tiny-reliability.json");

  Result resumed = nextn_in(dir, "/", "train --run '" + dir.file("killed") + "' --resume");  // no --threads
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_EQ(resumed.output.find("note: the run was trained with"), std::string::npos) << resumed.output;
  const auto a = records_of(dir.file("straight"), "train"), b = records_of(dir.file("killed"), "train");
  ASSERT_EQ(a.size(), 10u);
  ASSERT_EQ(b.size(), 10u);
  EXPECT_EQ(a.back()["loss"].get<double>(), b.back()["loss"].get<double>());
  EXPECT_EQ(io::read_file(checkpoint(dir.file("straight"), 10) + "/model.safetensors"),
            io::read_file(checkpoint(dir.file("killed"), 10) + "/model.safetensors"));
}

// Found by fuzz/run_state_fuzzer: nlohmann's get<int64_t>() converted 1e119 to an integer with
// undefined behaviour (UBSan: "outside the range of representable values").
TEST(Reliability, AFloatWhereAnIntegerBelongsIsRefusedByName) {
  nlohmann::json state = to_json(TrainerState{});
  state["step"] = 1.11111e119;
  try {
    trainer_state_from_json(state);
    FAIL() << "accepted step 1e119";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'step' must be an integer, got 1.11111e+119"), std::string::npos) << e.what();
  }
  TrainOptions options;
  options.data_dir = "d";
  options.run_dir = "r";
  nlohmann::json run = train_options_to_json(options);
  run["seq_len"] = 256.5;
  try {
    train_options_from_json(run);
    FAIL() << "accepted seq_len 256.5";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'seq_len' must be an integer, got 256.5"), std::string::npos) << e.what();
  }
}

// Issue 19: a model whose group scores sum other than 2 scores routes differently in HF's code.
TEST(Reliability, ExportRefusesAModelTheReferenceCodeWouldRouteDifferently) {
  TempDir dir("reliability_export");
  ModelConfig config = model_config_from_json(tiny_config_json());
  config.group_score_topk = 1;
  DeepSeekV3 model(config);
  save_model(*model, dir.file("model"));
  Result refused = nextn(dir, "export --model '" + dir.file("model") + "' --out '" + dir.file("hf") + "'");
  EXPECT_EQ(refused.code, 1) << refused.output;
  expect_contains(refused, "group_score_topk is 1");
  expect_contains(refused, "--allow-reference-differences");
  EXPECT_FALSE(fs::exists(dir.file("hf")));
  Result allowed = nextn(dir, "export --model '" + dir.file("model") + "' --out '" + dir.file("hf") +
                                  "' --allow-reference-differences");
  ASSERT_EQ(allowed.code, 0) << allowed.output;
  EXPECT_EQ(load_model_config(dir.file("hf/config.json")).group_score_topk, 1);
  Result info = nextn(dir, "model info --config '" + dir.file("hf/config.json") + "'");
  expect_contains(info, "note: group_score_topk is 1");
}

// ---- items 1, 6, 7, 11 and 12: refusals and clamps ----------------------------------------------

TEST(Reliability, SizesThatCannotFitAreRefusedWithTheSizesNamed) {
  TempDir dir("reliability_sizes");
  nlohmann::json huge = tiny_config_json();
  huge["hidden_size"] = 65536;
  huge["intermediate_size"] = 1000000;
  huge["moe_intermediate_size"] = 1000000;
  Result r = nextn(dir, "smoke --config '" + write_json(dir, "huge.json", huge) + "' --steps 1");
  EXPECT_EQ(r.code, 1) << r.output;
  expect_contains(r, "parameters");
  expect_contains(r, "of memory, and this machine has");
  expect_contains(r, "TiB");

  nlohmann::json experts = tiny_config_json();
  experts["n_routed_experts"] = 1 << 30;
  r = nextn(dir, "smoke --config '" + write_json(dir, "experts.json", experts) + "' --steps 1");
  EXPECT_EQ(r.code, 1) << r.output;
  expect_contains(r, "of memory, and this machine has");

  nlohmann::json layers = tiny_config_json();
  layers["num_hidden_layers"] = 1000000000000LL;
  r = nextn(dir, "model info --config '" + write_json(dir, "layers.json", layers) + "'");
  EXPECT_EQ(r.code, 1) << r.output;
  expect_contains(r, "config key 'num_hidden_layers' is 1000000000000, more than nextn supports");

  nlohmann::json tokenizer = nlohmann::json::parse(io::read_file(tiny_corpus().dataset_dir + "/tokenizer.json"));
  tokenizer["added_tokens"].push_back({{"id", 1000000000}, {"content", "<far>"}, {"single_word", false},
                                       {"lstrip", false}, {"rstrip", false}, {"normalized", false}, {"special", true}});
  r = nextn(dir, "tokenizer info --tokenizer '" + write_json(dir, "far.json", tokenizer) + "'");
  EXPECT_EQ(r.code, 1) << r.output;
  expect_contains(r, "token id 1000000000 is far past the vocabulary");
}

TEST(Reliability, FilesAndOptionsThatWereAcceptedSilentlyAreRefused) {
  TempDir dir("reliability_options");
  const std::string run = six_step_run();
  auto refused = [&](const std::string& args, const std::string& fragment) {
    Result r = nextn(dir, args);
    EXPECT_TRUE(r.code == 1 || r.code == 105) << args << " exits " << r.code << "\n" << r.output;  // 105: CLI11's
    EXPECT_NE(r.output.find(fragment), std::string::npos) << args << ": output lacks '" << fragment << "':\n" << r.output;
  };
  refused("generate --model '" + run + "' --prompt x --speculative mtp --draft 0", "--draft 0: drafts per step must be at least 1");
  refused("generate --model '" + run + "' --prompt x --seed -1", "a seed is a non-negative integer");
  refused("generate --model '" + run + "' --prompt-file '" + dir.path() + "'", "is a directory, not a file");
  refused("generate --model '" + run + "' --prompt x --speculative mtp --draft 3",
          "for the deeper drafts with the option to do so (--reuse-last-module)");

  const std::string text = io::read_file(testing::source_path("configs/tiny.json"));
  io::write_file_atomic(dir.file("dup.json"), "{\"vocab_size\": 128, " + text.substr(text.find('{') + 1));
  refused("model info --config '" + dir.file("dup.json") + "'", "repeats the key");
  io::write_file_atomic(dir.file("overflow.json"), "{\"vocab_size\": 1e999, " + text.substr(text.find('{') + 1));
  refused("model info --config '" + dir.file("overflow.json") + "'", dir.file("overflow.json"));

  Result threads = nextn(dir, "generate --model '" + run + "' --prompt x --max-new-tokens 2 --threads 100000");
  EXPECT_EQ(threads.code, 0) << threads.output;
  expect_contains(threads, "--threads 100000 is more than this machine's");
}

// Each of these used to be accepted (and ran on something else than what was asked), or refused
// with a libtorch message or a range that printed the largest double in 309 digits.
TEST(Reliability, OptionsOutOfRangeAreRefusedWithTheOptionNamed) {
  TempDir dir("reliability_option_ranges");
  const std::string run = six_step_run();
  auto refused = [&](const std::string& args, const std::string& fragment) {
    Result r = nextn(dir, args);
    EXPECT_NE(r.code, 0) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(fragment), std::string::npos) << args << ": output lacks '" << fragment << "':\n" << r.output;
    EXPECT_EQ(r.output.find("179769"), std::string::npos) << args << " prints the largest double:\n" << r.output;
  };
  const std::string generate = "generate --model '" + run + "' --max-new-tokens 2 ";
  const std::string inspect = "inspect --model '" + run + "' --prompt x ";
  for (const std::string& command : {generate + "--prompt x", inspect, "eval --model '" + run + "' --data '" +
                                                                           tiny_corpus().dataset_dir + "'"}) {
    refused(command + " --threads -1", "--threads: must be 0 or more, got -1");
  }
  refused("data prepare --input '" + dir.path() + "' --output '" + dir.file("d") + "' --shard-tokens 0",
          "--shard-tokens: must be more than 0, got 0");
  // Infinity is not a number of seconds: --grace inf became INT64_MIN milliseconds (no grace).
  refused("serve --model '" + dir.file("absent") + "' --grace inf", "--grace: must be a finite number, got inf");
  refused("train --run '" + dir.file("r") + "' --dist-timeout 1e400", "--dist-timeout: must be a finite number");

  io::write_file_atomic(dir.file("prompt.txt"), "def");
  refused(generate + "--prompt x --prompt-file '" + dir.file("prompt.txt") + "'", "excludes --prompt");
  refused(generate + "--prompt x --speculative mtp --draft-tree ''", "--draft-tree '': give the children per node");
  refused("serve --model '" + dir.file("absent") + "' --speculative mtp --draft-tree ''",
          "--draft-tree '': give the children per node");
  for (const char* temperature : {"-1", "nan", "inf"}) {
    refused(generate + "--prompt x --greedy --temperature " + temperature,
            std::string("temperature must be >= 0 (0: greedy), got ") + temperature);
  }
  for (const char* k : {"-1", "0", "100000"}) {
    refused(inspect + "--top-k " + k, std::string("--top-k must be in [1, 384] (the model's vocab_size), got ") + k);
  }
  expect_contains(nextn(dir, inspect + "--top-k 384"), "MTP depth 1:");  // the whole vocabulary is allowed

  refused("eval --model '" + run + "' --data '" + tiny_corpus().dataset_dir + "' --max-batches -1",
          "--max-batches: must be 0 or more, got -1");
  EvalOptions eval_options;
  eval_options.max_batches = -1;
  DeepSeekV3 model = load_model(checkpoint(run, 6));
  auto dataset = data::TokenDataset::open(tiny_corpus().dataset_dir);
  try {
    evaluate(*model, dataset, eval_options);
    FAIL() << "evaluated -1 batches";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_batches must be >= 0"), std::string::npos) << e.what();
  }

  for (const char* size : {"-5", "0"}) {
    refused("export --model '" + run + "' --out '" + dir.file("hf") + "' --max-shard-bytes " + size,
            std::string("--max-shard-bytes: must be more than 0, got ") + size);
    EXPECT_FALSE(fs::exists(dir.file("hf"))) << "--max-shard-bytes " << size << " left a directory";
  }
}

// float16 ends at 65504: a norm weight of 1e6 was exported as inf. Nothing is written.
TEST(Reliability, ExportRefusesAValuePastTheRangeOfItsDtype) {
  TempDir dir("reliability_export_range");
  DeepSeekV3 model = load_model(checkpoint(six_step_run(), 6));
  {
    torch::NoGradGuard no_grad;
    model->norm->weight[0] = 1e6;
  }
  save_model(*model, dir.file("model"));
  Result r = nextn(dir, "export --model '" + dir.file("model") + "' --out '" + dir.file("hf") + "' --dtype float16");
  EXPECT_EQ(r.code, 1) << r.output;
  expect_contains(r, "tensor 'model.norm.weight' holds values up to 1e+06 in magnitude, past float16's largest 65504");
  EXPECT_FALSE(fs::exists(dir.file("hf")));
  EXPECT_EQ(nextn(dir, "export --model '" + dir.file("model") + "' --out '" + dir.file("hf") + "' --dtype bfloat16").code, 0);
}

}  // namespace reliability
}  // namespace
}  // namespace nextn
