// `nextn export` is all or nothing: an export over an earlier one replaces it completely, one that
// fails or is killed part-way leaves the earlier one byte for byte and no temporaries behind (the
// next export removes a killed one's), and a directory holding anything but an export is refused
// rather than deleted.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <map>
#include <set>

#include "data/data_fixtures.h"
#include "nextn/checkpoint/model_export.h"
#include "nextn/io/checkpoint_shards.h"
#include "nextn/io/directory_replace.h"
#include "nextn/util/error.h"
#include "test_support.h"

namespace nextn {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

DeepSeekV3 seeded_model(const ModelConfig& config, uint64_t seed) {
  torch::manual_seed(seed);
  return DeepSeekV3(config);
}

// Every file directly in `dir` with its bytes.
std::map<std::string, std::string> files_of(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    files[entry.path().filename().string()] = entry.is_directory() ? "<dir>" : io::read_file(entry.path().string());
  }
  return files;
}

std::set<std::string> names_of(const std::map<std::string, std::string>& files) {
  std::set<std::string> names;
  for (const auto& item : files) names.insert(item.first);
  return names;
}

std::string listed(const std::set<std::string>& names) {
  std::string text;
  for (const std::string& name : names) text += name + " ";
  return text;
}

// Entries of `dir` whose names start with "." (the temporaries of a replacement are hidden).
std::vector<std::string> hidden_entries(const std::string& dir) {
  std::vector<std::string> hidden;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name[0] == '.') hidden.push_back(name);
  }
  return hidden;
}

// A model directory as training leaves one: weights, a tokenizer and the drafters' vocabulary.
std::string source_model(const TempDir& dir, DeepSeekV3Impl& model) {
  const std::string source = dir.file("source");
  save_model(model, source);
  io::write_file_atomic(source + "/tokenizer.json", "{\"tokenizer\": \"bytes copied as they are\"}");
  io::write_file_atomic(source + "/tokenizer_config.json", "{\"chat_template\": \"copied too\"}");
  io::write_file_atomic(source + "/draft_vocab.json", "{\"ranked by\": \"a test\"}");
  return source;
}

SaveModelOptions sharded_every(uint64_t bytes) {
  SaveModelOptions options;
  options.max_shard_bytes = bytes;
  return options;
}

void expect_weights_of(const std::string& dir, DeepSeekV3Impl& model, int64_t mtp_layers) {
  const ModelConfig config = load_model_config(dir + "/config.json");
  EXPECT_EQ(config.num_nextn_predict_layers, mtp_layers);
  io::CheckpointShards weights(dir);
  EXPECT_TRUE(torch::equal(weights.read("model.embed_tokens.weight"), model.embed_tokens->weight));
  EXPECT_TRUE(torch::equal(weights.read("lm_head.weight"), model.lm_head->weight));
}

TEST(ModelExport, AnExportOverAnEarlierOneReplacesItCompletely) {
  TempDir dir("export_replace");
  DeepSeekV3 first = seeded_model(testing::tiny_config(), 1);
  DeepSeekV3 second = seeded_model(testing::tiny_config(), 2);
  const std::string source = source_model(dir, *first);
  const std::string out = dir.file("out");

  EXPECT_TRUE(export_model(*first, source, out, sharded_every(20'000)).has_tokenizer);
  const auto sharded = files_of(out);
  EXPECT_TRUE(sharded.count(io::kCheckpointIndexFile));
  EXPECT_GT(sharded.size(), 6u);  // config, index, tokenizer, draft vocabulary and 3+ shards
  EXPECT_EQ(sharded.at("draft_vocab.json"), io::read_file(source + "/draft_vocab.json"));

  // One file now, without the drafters: every shard, the index and the draft vocabulary go.
  SaveModelOptions main_only;
  main_only.drop_mtp = true;
  export_model(*second, source, out, main_only);
  EXPECT_EQ(names_of(files_of(out)),
            (std::set<std::string>{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}));
  EXPECT_EQ(files_of(out).at("tokenizer_config.json"), io::read_file(source + "/tokenizer_config.json"));
  expect_weights_of(out, *second, 0);
  EXPECT_EQ(hidden_entries(dir.path()), std::vector<std::string>{});
}

TEST(ModelExport, AnExportThatFailsPartWayLeavesTheEarlierOneByteForByte) {
  TempDir dir("export_fail");
  DeepSeekV3 first = seeded_model(testing::tiny_config(), 1);
  const std::string source = source_model(dir, *first);
  const std::string out = dir.file("out");
  export_model(*first, source, out, sharded_every(20'000));
  const auto before = files_of(out);

  // Fails after every file of the new export is written (a full disk at the last fsync, say).
  DeepSeekV3 second = seeded_model(testing::tiny_config(), 2);
  EXPECT_THROW(io::replace_directory(out,
                                     [&](const std::string& staging) {
                                       write_export_files(*second, source, staging, SaveModelOptions{});
                                       fail("injected failure after the last file");
                                     }),
               Error);
  EXPECT_EQ(files_of(out), before);

  // Fails inside save_model: a weight past float16's range is found while the export is written.
  {
    torch::NoGradGuard no_grad;
    second->norm->weight[0] = 1e6;
  }
  SaveModelOptions float16;
  float16.dtype = torch::kHalf;
  EXPECT_THROW(export_model(*second, source, out, float16), Error);
  EXPECT_EQ(files_of(out), before);
  EXPECT_EQ(hidden_entries(dir.path()), std::vector<std::string>{});
}

TEST(ModelExport, ADirectoryHoldingOtherFilesIsRefusedAndKept) {
  TempDir dir("export_foreign");
  DeepSeekV3 model = seeded_model(testing::tiny_config(), 1);
  const std::string source = source_model(dir, *model);
  const std::string out = dir.file("out");
  fs::create_directories(out + "/data");
  io::write_file_atomic(out + "/notes.txt", "mine");
  io::write_file_atomic(out + "/config.json", "{}");
  const auto before = files_of(out);
  try {
    export_model(*model, source, out, SaveModelOptions{});
    FAIL() << "an export replaced a directory holding other files";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("holds 'data', 'notes.txt', which no export has"), std::string::npos) << message;
  }
  EXPECT_EQ(files_of(out), before);
  EXPECT_EQ(hidden_entries(dir.path()), std::vector<std::string>{});

  // A training checkpoint (optimizer state, checksums) is no export either.
  EXPECT_NO_THROW(check_export_target(source));  // config, weights, tokenizer, draft vocabulary
  io::write_file_atomic(source + "/checksums.json", "{}");
  EXPECT_THROW(check_export_target(source), Error);
}

TEST(ModelExport, EmptyDirectoriesAndLeftoversOfAnOlderNextnAreReplaced) {
  TempDir dir("export_leftovers");
  DeepSeekV3 model = seeded_model(testing::tiny_config(), 1);
  const std::string source = source_model(dir, *model);
  fs::create_directories(dir.file("empty"));
  export_model(*model, source, dir.file("empty"), SaveModelOptions{});
  expect_weights_of(dir.file("empty"), *model, 2);

  // What an export killed mid-write in place used to leave (before exports were replaced whole).
  const std::string old = dir.file("old");
  fs::create_directories(old);
  io::write_file_atomic(old + "/model-00001-of-00002.safetensors", "half");
  io::write_file_atomic(old + "/model.safetensors.tmp.4242", "half");
  export_model(*model, source, old, SaveModelOptions{});
  EXPECT_EQ(names_of(files_of(old)),
            (std::set<std::string>{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                                   "draft_vocab.json"}));
}

TEST(ModelExport, ExportFileNames) {
  for (const char* name : {"config.json", "model.safetensors", "model.safetensors.index.json",
                           "model-00002-of-00003.safetensors", "tokenizer.json", "tokenizer_config.json",
                           "draft_vocab.json", "model.safetensors.tmp.123", "config.json.tmp.9"}) {
    EXPECT_TRUE(is_export_file_name(name)) << name;
  }
  for (const char* name : {"README.md", "checksums.json", "optimizer.safetensors", "trainer_state.json",
                           "model-1-of-2.safetensors", "config.json.tmp.", "config.json.tmp.x", ".tmp.1"}) {
    EXPECT_FALSE(is_export_file_name(name)) << name;
  }
}

// The real command, killed with SIGKILL while it writes: at that instant and after, --out holds
// the earlier export byte for byte (or, had the kill come after the exchange, the new one whole);
// the next export removes what the killed one left and completes.
TEST(ModelExport, AKilledExportLeavesTheEarlierExportWhole) {
  TempDir dir("export_kill");
  ModelConfig config = testing::tiny_config();
  config.vocab_size = 20'000;  // about 16 MB of weights: writing them takes a while
  DeepSeekV3 model = seeded_model(config, 1);
  const std::string source = source_model(dir, *model);
  const std::string out = dir.file("out"), reference = dir.file("reference");
  auto export_args = [&](const std::string& to, bool sharded) {
    std::vector<std::string> args = {"export", "--model", source, "--out", to};
    if (sharded) args.insert(args.end(), {"--dtype", "bfloat16", "--max-shard-bytes", "1000000", "--drop-mtp"});
    return args;
  };
  auto run_export = [&](const std::string& to, bool sharded) {
    const int status = testing::wait_for_exit(testing::spawn_nextn(export_args(to, sharded), dir.file("export.log")));
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << io::read_file(dir.file("export.log"));
  };
  run_export(out, false);
  run_export(reference, true);
  const auto earlier = files_of(out), newer = files_of(reference);
  ASSERT_NE(names_of(earlier), names_of(newer));

  const pid_t pid = testing::spawn_nextn(export_args(out, true), dir.file("killed.log"));
  const std::string staging = dir.file(cat(".out.tmp.", pid));
  ASSERT_TRUE(testing::wait_for_path(staging, pid, 120)) << io::read_file(dir.file("killed.log"));
  ::kill(pid, SIGKILL);
  testing::wait_for_exit(pid);
  const auto after_kill = files_of(out);
  EXPECT_TRUE(after_kill == earlier || after_kill == newer) << "a mixture: " << listed(names_of(after_kill));

  run_export(out, true);
  EXPECT_EQ(files_of(out), newer);
  EXPECT_EQ(hidden_entries(dir.path()), std::vector<std::string>{});
}

// `nextn model init`: the weights are those of the seeded initialization (what a training run with
// that --seed starts from), the tokenizer is copied byte for byte, and the command writes the same
// files as the library call.
TEST(ModelInit, WritesTheSeededInitializationAndTheTokenizer) {
  TempDir dir("model_init");
  ModelConfig config = testing::tiny_config();
  config.vocab_size = 400;  // room for the test tokenizer's ids (at most 362)
  const std::string config_path = dir.file("config.json"), tokenizer_path = dir.file("tokenizer.json");
  io::write_file_atomic(config_path, model_config_to_json(config).dump(2));
  data::testing::corpus_tokenizer().save(tokenizer_path);
  io::write_file_atomic(dir.file("tokenizer_config.json"), "{\"chat_template\": \"{{ messages }}\"}");

  const std::string out = dir.file("out");
  EXPECT_TRUE(init_model_directory(config, 7, tokenizer_path, out, SaveModelOptions{}).has_tokenizer);
  EXPECT_EQ(names_of(files_of(out)),
            (std::set<std::string>{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}));
  EXPECT_EQ(io::read_file(out + "/tokenizer.json"), io::read_file(tokenizer_path));
  EXPECT_EQ(io::read_file(out + "/tokenizer_config.json"), io::read_file(dir.file("tokenizer_config.json")));
  DeepSeekV3 loaded = load_model(out);
  DeepSeekV3 expected = seeded_model(config, 7);
  size_t compared = 0;
  for (const auto& item : expected->named_parameters()) {
    EXPECT_TRUE(torch::equal(loaded->named_parameters()[item.key()], item.value())) << item.key();
    ++compared;
  }
  EXPECT_GT(compared, 20u);
  EXPECT_FALSE(torch::equal(loaded->lm_head->weight, seeded_model(config, 8)->lm_head->weight));

  const std::string by_command = dir.file("by_command");
  const int status = testing::wait_for_exit(testing::spawn_nextn(
      {"model", "init", "--config", config_path, "--tokenizer", tokenizer_path, "--seed", "7", "--out", by_command},
      dir.file("init.log")));
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << io::read_file(dir.file("init.log"));
  EXPECT_EQ(files_of(by_command), files_of(out));

  // Without a tokenizer, the weights alone; in bfloat16 when asked.
  SaveModelOptions bfloat16;
  bfloat16.dtype = torch::kBFloat16;
  const std::string bare = dir.file("bare");
  EXPECT_FALSE(init_model_directory(config, 7, "", bare, bfloat16).has_tokenizer);
  EXPECT_EQ(names_of(files_of(bare)), (std::set<std::string>{"config.json", "model.safetensors"}));
  EXPECT_TRUE(torch::equal(io::CheckpointShards(bare).read("lm_head.weight"),
                           expected->lm_head->weight.to(torch::kBFloat16)));
}

TEST(ModelInit, RefusesATokenizerTooLargeOrUnreadableAndWritesNothing) {
  TempDir dir("model_init_refused");
  const ModelConfig config = testing::tiny_config();  // vocab_size 128
  const std::string tokenizer_path = dir.file("tokenizer.json"), out = dir.file("out");
  const tokenizer::Tokenizer tokenizer = data::testing::corpus_tokenizer();
  tokenizer.save(tokenizer_path);
  ASSERT_GT(tokenizer.vocab_size(), 128);
  data::testing::expect_error([&] { init_model_directory(config, 0, tokenizer_path, out, SaveModelOptions{}); },
                              cat(tokenizer.vocab_size(), " ids, more than the model's vocab_size of 128"));
  EXPECT_FALSE(fs::exists(out));
  io::write_file_atomic(dir.file("broken.json"), "{\"model\": ");
  EXPECT_THROW(init_model_directory(config, 0, dir.file("broken.json"), out, SaveModelOptions{}), Error);
  EXPECT_FALSE(fs::exists(out));
  // An --out holding other files is refused and kept, as export's.
  fs::create_directories(out);
  io::write_file_atomic(out + "/notes.txt", "mine");
  data::testing::expect_error([&] { init_model_directory(config, 0, "", out, SaveModelOptions{}); }, "'notes.txt'");
  EXPECT_EQ(names_of(files_of(out)), std::set<std::string>{"notes.txt"});
  EXPECT_EQ(hidden_entries(dir.path()), std::vector<std::string>{});
}

}  // namespace
}  // namespace nextn
