// HF checkpoint directories: sharding, the index, validation of the index against the shards, and
// rewriting a directory that already holds a checkpoint.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <set>

#include "io_test_util.h"
#include "nextn/io/checkpoint_shards.h"

namespace nextn::io {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::expect_error;
using test::ScratchDir;

// `count` F32 tensors of 100 elements (400 bytes) each, values depending on `seed`.
std::vector<NamedTensor> model_tensors(int count, float seed) {
  std::vector<NamedTensor> tensors;
  for (int i = 0; i < count; ++i) {
    tensors.push_back({cat("layers.", i, ".weight"), torch::arange(100, torch::kFloat32) * seed + i});
  }
  return tensors;
}

std::set<std::string> files_in(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& item : fs::directory_iterator(dir)) names.insert(item.path().filename().string());
  return names;
}

json read_index(const std::string& dir) {
  return json::parse(test::read_raw_file((fs::path(dir) / kCheckpointIndexFile).string()));
}

void write_index(const std::string& dir, const json& index) {
  test::write_raw_file((fs::path(dir) / kCheckpointIndexFile).string(), index.dump(2));
}

void expect_checkpoint_holds(const std::string& dir, const std::vector<NamedTensor>& tensors) {
  CheckpointShards checkpoint(dir);
  std::vector<std::string> expected_names;
  for (const NamedTensor& named : tensors) expected_names.push_back(named.name);
  std::sort(expected_names.begin(), expected_names.end());
  EXPECT_EQ(checkpoint.names(), expected_names);
  for (const NamedTensor& named : tensors) {
    torch::Tensor back = checkpoint.read(named.name);
    EXPECT_EQ(test::tensor_bytes(back), test::tensor_bytes(named.tensor)) << named.name;
    EXPECT_TRUE(torch::equal(back, named.tensor)) << named.name;
    EXPECT_EQ(checkpoint.entry(named.name).shape, named.tensor.sizes().vec());
  }
}

TEST(CheckpointShards, ShardFileNamesFollowHuggingFace) {
  EXPECT_EQ(checkpoint_shard_file_name(1, 3), "model-00001-of-00003.safetensors");
  EXPECT_EQ(checkpoint_shard_file_name(163, 163), "model-00163-of-00163.safetensors");
}

TEST(CheckpointShards, SmallLimitForcesShardsAndTheIndexDescribesThem) {
  ScratchDir dir;
  const auto tensors = model_tensors(6, 1.5f);
  write_checkpoint_shards(dir.path(), tensors, 1000);  // two 400-byte tensors per shard

  EXPECT_EQ(files_in(dir.path()),
            (std::set<std::string>{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                   "model-00003-of-00003.safetensors", kCheckpointIndexFile}));
  const json index = read_index(dir.path());
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), 6u * 400u);
  ASSERT_EQ(index["weight_map"].size(), 6u);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(index["weight_map"][cat("layers.", i, ".weight")], checkpoint_shard_file_name(i / 2 + 1, 3));
  }

  CheckpointShards checkpoint(dir.path());
  EXPECT_TRUE(checkpoint.has_index());
  EXPECT_EQ(checkpoint.files().size(), 3u);
  EXPECT_EQ(checkpoint.file_of("layers.5.weight"), "model-00003-of-00003.safetensors");
  EXPECT_TRUE(checkpoint.contains("layers.0.weight"));
  EXPECT_FALSE(checkpoint.contains("layers.6.weight"));
  expect_checkpoint_holds(dir.path(), tensors);

  // Within a shard, tensors keep the given order; each shard says it holds PyTorch tensors.
  SafetensorsReader shard(dir.file("model-00002-of-00003.safetensors"));
  ASSERT_EQ(shard.entries().size(), 2u);
  EXPECT_EQ(shard.entries()[0].name, "layers.2.weight");
  EXPECT_EQ(shard.entries()[1].name, "layers.3.weight");
  EXPECT_EQ(shard.metadata().at("format"), "pt");
}

TEST(CheckpointShards, ACheckpointThatFitsIsOneFileWithoutIndex) {
  ScratchDir dir;
  const auto tensors = model_tensors(3, 2.0f);
  write_checkpoint_shards(dir.path(), tensors, 1200, {{"step", "10"}});  // exactly the total
  EXPECT_EQ(files_in(dir.path()), (std::set<std::string>{kSingleCheckpointFile}));
  CheckpointShards checkpoint(dir.path());
  EXPECT_FALSE(checkpoint.has_index());
  EXPECT_EQ(checkpoint.files(), (std::vector<std::string>{kSingleCheckpointFile}));
  expect_checkpoint_holds(dir.path(), tensors);
  const auto metadata = SafetensorsReader(dir.file(kSingleCheckpointFile)).metadata();
  EXPECT_EQ(metadata, (std::map<std::string, std::string>{{"format", "pt"}, {"step", "10"}}));
}

TEST(CheckpointShards, ACallersFormatMetadataIsKept) {
  ScratchDir dir;
  write_checkpoint_shards(dir.path(), model_tensors(1, 1.0f), 1000, {{"format", "nextn"}});
  EXPECT_EQ(SafetensorsReader(dir.file(kSingleCheckpointFile)).metadata().at("format"), "nextn");
}

TEST(CheckpointShards, ATensorLargerThanTheLimitGetsItsOwnShard) {
  ScratchDir dir;
  std::vector<NamedTensor> tensors = {{"small.0", torch::ones({10})},
                                      {"huge", torch::ones({1000})},  // 4000 bytes > 1000
                                      {"small.1", torch::ones({10})},
                                      {"small.2", torch::ones({10})}};
  write_checkpoint_shards(dir.path(), tensors, 1000);
  const json weight_map = read_index(dir.path())["weight_map"];
  EXPECT_EQ(weight_map["small.0"], "model-00001-of-00003.safetensors");
  EXPECT_EQ(weight_map["huge"], "model-00002-of-00003.safetensors");
  EXPECT_EQ(weight_map["small.1"], "model-00003-of-00003.safetensors");
  EXPECT_EQ(weight_map["small.2"], "model-00003-of-00003.safetensors");
  expect_checkpoint_holds(dir.path(), tensors);
}

TEST(CheckpointShards, MixedDtypesAndEmptyTensorsShard) {
  ScratchDir dir;
  std::vector<NamedTensor> tensors = {{"bf16", torch::randn({20, 10}).to(torch::kBFloat16)},
                                      {"empty", torch::empty({0, 5})},
                                      {"ids", torch::arange(50, torch::kInt64)},
                                      {"mask", torch::ones({7}, torch::kBool)}};
  write_checkpoint_shards(dir.path(), tensors, 400);
  expect_checkpoint_holds(dir.path(), tensors);
}

class CheckpointShardsBroken : public ::testing::Test {
 protected:
  void SetUp() override { write_checkpoint_shards(dir_.path(), model_tensors(6, 1.0f), 1000); }
  ScratchDir dir_;
};

TEST_F(CheckpointShardsBroken, MissingShardFile) {
  fs::remove(dir_.file("model-00002-of-00003.safetensors"));
  expect_error([&] { CheckpointShards checkpoint(dir_.path()); },
               {kCheckpointIndexFile, "'model-00002-of-00003.safetensors'", "does not exist"});
}

TEST_F(CheckpointShardsBroken, IndexNamesATensorAbsentFromItsShard) {
  json index = read_index(dir_.path());
  index["weight_map"]["ghost"] = "model-00001-of-00003.safetensors";
  write_index(dir_.path(), index);
  expect_error([&] { CheckpointShards checkpoint(dir_.path()); },
               {"'ghost'", "'model-00001-of-00003.safetensors'", "has no such tensor"});
}

TEST_F(CheckpointShardsBroken, ShardHoldsATensorTheIndexDoesNotMap) {
  json index = read_index(dir_.path());
  index["weight_map"].erase("layers.3.weight");
  write_index(dir_.path(), index);
  expect_error([&] { CheckpointShards checkpoint(dir_.path()); },
               {"'model-00002-of-00003.safetensors'", "'layers.3.weight'", "does not list"});
}

TEST_F(CheckpointShardsBroken, IndexMapsATensorToTheWrongShard) {
  json index = read_index(dir_.path());
  index["weight_map"]["layers.3.weight"] = "model-00003-of-00003.safetensors";
  write_index(dir_.path(), index);
  expect_error([&] { CheckpointShards checkpoint(dir_.path()); }, {"'layers.3.weight'"});
}

TEST_F(CheckpointShardsBroken, ShardThatIsNotValidSafetensors) {
  test::write_raw_file(dir_.file("model-00003-of-00003.safetensors"), "garbage");
  expect_error([&] { CheckpointShards checkpoint(dir_.path()); }, {"model-00003-of-00003.safetensors", "shorter"});
}

TEST_F(CheckpointShardsBroken, MalformedIndexes) {
  const std::string index_path = dir_.file(kCheckpointIndexFile);
  auto expect_index_error = [&](const std::string& text, std::initializer_list<std::string> fragments) {
    test::write_raw_file(index_path, text);
    expect_error([&] { CheckpointShards checkpoint(dir_.path()); }, fragments);
    expect_error([&] { CheckpointShards checkpoint(dir_.path()); }, {kCheckpointIndexFile});
  };
  expect_index_error("{\"weight_map\": ", {"not valid JSON"});
  expect_index_error("[]", {"must be a JSON object"});
  expect_index_error(std::string("{\"weight_map\": {}}\0", 19), {"NUL byte"});
  expect_index_error("{}", {"no \"weight_map\""});
  expect_index_error(R"({"weight_map": []})", {"\"weight_map\" must be an object"});
  expect_index_error(R"({"weight_map": {"a": 3}})", {"tensor 'a'", "not a file name"});
  expect_index_error(R"({"weight_map": {"a": "../model-00001-of-00003.safetensors"}})", {"not a plain file name"});
  expect_index_error(R"({"weight_map": {"a": "/etc/passwd"}})", {"not a plain file name"});
  expect_index_error(R"({"weight_map": {"a": "x", "a": "y"}})", {"repeats the key 'weight_map' > 'a'"});
  expect_index_error(R"({"metadata": 5, "weight_map": {}})", {"\"metadata\" must be an object"});
}

TEST(CheckpointShards, NoCheckpointInTheDirectory) {
  ScratchDir dir;
  expect_error([&] { CheckpointShards checkpoint(dir.path()); }, {"no checkpoint in", dir.path()});
  expect_error([&] { CheckpointShards checkpoint(dir.file("absent")); }, {"absent", "does not exist"});
  test::write_raw_file(dir.file("model-00001-of-00002.safetensors"), "x");
  expect_error([&] { CheckpointShards checkpoint(dir.path()); }, {"no checkpoint in", "interrupted"});
}

// transformers' from_pretrained reads model.safetensors when both are there, vLLM and SGLang the
// index: no choice would agree with every reader, so the directory is refused with both named.
TEST(CheckpointShards, BothLayoutsInOneDirectoryAreRefusedNamingBoth) {
  ScratchDir dir;
  const auto tensors = model_tensors(4, 3.0f);
  write_checkpoint_shards(dir.path(), tensors, 1000);
  write_safetensors(dir.file(kSingleCheckpointFile), {{"stray", torch::ones({1})}});
  expect_error([&] { CheckpointShards checkpoint(dir.path()); },
               {dir.path(), "holds both model.safetensors and model.safetensors.index.json", "from_pretrained",
                "vLLM"});
  // Writing a checkpoint again ends the ambiguity, whichever layout it takes.
  const auto rewritten = model_tensors(4, 4.0f);
  write_checkpoint_shards(dir.path(), rewritten, 1u << 20);
  EXPECT_EQ(files_in(dir.path()), (std::set<std::string>{kSingleCheckpointFile}));
  expect_checkpoint_holds(dir.path(), rewritten);
}

TEST(CheckpointShards, RewritingWithADifferentShardingLeavesOneConsistentCheckpoint) {
  ScratchDir dir;
  write_checkpoint_shards(dir.path(), model_tensors(6, 1.0f), 1000);  // 3 shards

  const auto two_shards = model_tensors(6, 2.0f);
  write_checkpoint_shards(dir.path(), two_shards, 1200);
  EXPECT_EQ(files_in(dir.path()), (std::set<std::string>{"model-00001-of-00002.safetensors",
                                                         "model-00002-of-00002.safetensors", kCheckpointIndexFile}));
  expect_checkpoint_holds(dir.path(), two_shards);

  const auto same_sharding = model_tensors(6, 3.0f);  // same file names, new contents
  write_checkpoint_shards(dir.path(), same_sharding, 1200);
  expect_checkpoint_holds(dir.path(), same_sharding);

  const auto single = model_tensors(5, 4.0f);  // fewer tensors, one file
  write_checkpoint_shards(dir.path(), single, 1u << 20);
  EXPECT_EQ(files_in(dir.path()), (std::set<std::string>{kSingleCheckpointFile}));
  expect_checkpoint_holds(dir.path(), single);

  const auto four_shards = model_tensors(8, 5.0f);
  write_checkpoint_shards(dir.path(), four_shards, 800);
  EXPECT_EQ(files_in(dir.path()).count(kSingleCheckpointFile), 0u);
  EXPECT_EQ(files_in(dir.path()).size(), 5u);
  expect_checkpoint_holds(dir.path(), four_shards);
}

// Makes the next write of `file` in `dir` fail: AtomicFileWriter cannot create its temporary file
// when a directory of that name is in the way. Returns the blocking directory.
std::string block_write_of(const ScratchDir& dir, const std::string& file) {
  const std::string blocker = dir.file(cat(file, ".tmp.", ::getpid()));
  fs::create_directories(blocker);
  return blocker;
}

TEST(CheckpointShards, AnInterruptedRewriteWithNewFileNamesLeavesTheOldCheckpoint) {
  ScratchDir dir;
  const auto old_tensors = model_tensors(6, 1.0f);
  write_checkpoint_shards(dir.path(), old_tensors, 1000);  // 3 shards
  const std::string blocker = block_write_of(dir, "model-00002-of-00002.safetensors");
  EXPECT_THROW(write_checkpoint_shards(dir.path(), model_tensors(6, 2.0f), 1200), Error);  // 2 shards
  expect_checkpoint_holds(dir.path(), old_tensors);  // the old index still rules, untouched
  fs::remove(blocker);
}

TEST(CheckpointShards, AnInterruptedRewriteOfTheSameFilesIsReportedNotMixed) {
  ScratchDir dir;
  write_checkpoint_shards(dir.path(), model_tensors(6, 1.0f), 1000);  // 3 shards
  const std::string blocker = block_write_of(dir, "model-00002-of-00003.safetensors");
  // Shard 1 gets new contents, shard 2 cannot be written: old and new shards would match the old
  // index name for name, so the old index must already be gone.
  EXPECT_THROW(write_checkpoint_shards(dir.path(), model_tensors(6, 2.0f), 1000), Error);
  expect_error([&] { CheckpointShards checkpoint(dir.path()); }, {"no checkpoint in", "interrupted"});
  fs::remove(blocker);
  const auto retried = model_tensors(6, 3.0f);
  write_checkpoint_shards(dir.path(), retried, 1000);
  expect_checkpoint_holds(dir.path(), retried);
}

TEST(CheckpointShards, AnInterruptedRewriteOfAStraySingleFileKeepsTheIndexedCheckpoint) {
  ScratchDir dir;
  const auto old_tensors = model_tensors(4, 1.0f);
  write_checkpoint_shards(dir.path(), old_tensors, 1000);
  const std::string blocker = block_write_of(dir, kSingleCheckpointFile);
  EXPECT_THROW(write_checkpoint_shards(dir.path(), model_tensors(4, 2.0f), 1u << 20), Error);
  expect_checkpoint_holds(dir.path(), old_tensors);
  fs::remove(blocker);
}

TEST(CheckpointShards, RewritingReplacesAnUnreadableOldIndex) {
  ScratchDir dir;
  test::write_raw_file(dir.file(kCheckpointIndexFile), "{not json");
  test::write_raw_file(dir.file("model-00007-of-00009.safetensors"), "old");
  const auto tensors = model_tensors(2, 1.0f);
  write_checkpoint_shards(dir.path(), tensors, 1u << 20);
  EXPECT_EQ(files_in(dir.path()), (std::set<std::string>{kSingleCheckpointFile}));
  expect_checkpoint_holds(dir.path(), tensors);
}

TEST(CheckpointShards, AnInvalidWriteChangesNothing) {
  ScratchDir dir;
  const auto tensors = model_tensors(4, 1.0f);
  write_checkpoint_shards(dir.path(), tensors, 1000);
  const auto before = files_in(dir.path());
  auto duplicated = model_tensors(4, 9.0f);
  duplicated.push_back(duplicated.front());
  expect_error([&] { write_checkpoint_shards(dir.path(), duplicated, 1000); }, {"layers.0.weight", "twice"});
  expect_error([&] { write_checkpoint_shards(dir.path(), tensors, 0); }, {"limit must be positive"});
  EXPECT_EQ(files_in(dir.path()), before);
  expect_checkpoint_holds(dir.path(), tensors);
}

TEST(CheckpointShards, UnrelatedFilesInTheDirectoryAreLeftAlone) {
  ScratchDir dir;
  test::write_raw_file(dir.file("config.json"), "{}");
  test::write_raw_file(dir.file("notes.safetensors"), "mine");
  write_checkpoint_shards(dir.path(), model_tensors(4, 1.0f), 1000);
  write_checkpoint_shards(dir.path(), model_tensors(4, 1.0f), 1u << 20);
  EXPECT_EQ(files_in(dir.path()), (std::set<std::string>{"config.json", "notes.safetensors", kSingleCheckpointFile}));
}

}  // namespace
}  // namespace nextn::io
