// Dataset preparation and opening: shards reproduce the token stream, the split and the shard
// layout are as specified, results do not depend on threads, and every kind of damage is a named
// error.
#include <gtest/gtest.h>

#include <fstream>

#include "data/data_fixtures.h"
#include "nextn/data/dataset_builder.h"
#include "nextn/data/token_counts.h"
#include "nextn/data/shard_reader.h"
#include "nextn/data/token_dataset.h"
#include "nextn/io/atomic_file.h"
#include "nextn/util/error.h"
#include "nextn/util/sha256.h"

namespace nextn::data {
namespace {

namespace fs = std::filesystem;

using testing::TempDir;
using testing::expect_error;
using testing::corpus_tokenizer;
using testing::prepare_options;
using testing::write_corpus;
using testing::write_text;

std::vector<int32_t> shard_stream(const TokenDataset& dataset, Split split) {
  std::vector<int32_t> stream;
  for (const TokenShard& shard : dataset.shards(split)) {
    for (int64_t i = 0; i < shard.size(); ++i) stream.push_back(shard.token(i));
  }
  return stream;
}

class DatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    documents_ = write_corpus(corpus_.path(), 30);
    prepare_dataset(tokenizer_, prepare_options(corpus_.path(), dataset_dir()));
  }
  std::string dataset_dir() const { return output_ / "dataset"; }
  // A copy of the dataset to damage.
  std::string copy_dataset() {
    std::string copy = output_ / ("copy" + std::to_string(copies_++));
    fs::copy(dataset_dir(), copy, fs::copy_options::recursive);
    return copy;
  }

  TempDir corpus_, output_;
  std::vector<std::string> documents_;
  tokenizer::Tokenizer tokenizer_ = corpus_tokenizer();
  int copies_ = 0;
};

TEST_F(DatasetTest, ShardsReproduceTheTokenStream) {
  // Documents 4, 9, 14, 19, 24, 29 are validation documents (validation fraction 0.2).
  std::vector<int32_t> train, validation;
  for (int i = 0; i < int(documents_.size()); ++i) {
    std::vector<int32_t>& target = (i % 5 == 4) ? validation : train;
    std::vector<int32_t> ids = tokenizer_.encode_ordinary(documents_[i]);
    target.insert(target.end(), ids.begin(), ids.end());
    target.push_back(tokenizer_.eos_id());
  }
  TokenDataset dataset = TokenDataset::open(dataset_dir(), &tokenizer_);
  EXPECT_EQ(shard_stream(dataset, Split::kTrain), train);
  EXPECT_EQ(shard_stream(dataset, Split::kValidation), validation);
  EXPECT_EQ(dataset.num_documents(Split::kTrain), 24);
  EXPECT_EQ(dataset.num_documents(Split::kValidation), 6);
  EXPECT_EQ(dataset.num_tokens(Split::kTrain), int64_t(train.size()));
}

TEST_F(DatasetTest, TokenCountsAreTheStreamsCounts) {
  // Counted from the documents through the tokenizer, not from the shards: independent of them.
  std::vector<int64_t> train(tokenizer_.vocab_size() + 5, 0), first_100(train.size(), 0);
  int64_t seen = 0;
  for (int i = 0; i < int(documents_.size()); ++i) {
    if (i % 5 == 4) continue;  // validation documents
    std::vector<int32_t> ids = tokenizer_.encode_ordinary(documents_[i]);
    ids.push_back(tokenizer_.eos_id());
    for (int32_t id : ids) {
      ++train[id];
      if (seen++ < 100) ++first_100[id];
    }
  }
  TokenDataset dataset = TokenDataset::open(dataset_dir(), &tokenizer_);
  EXPECT_EQ(count_tokens(dataset, Split::kTrain, tokenizer_.vocab_size() + 5), train);
  EXPECT_EQ(count_tokens(dataset, Split::kTrain, tokenizer_.vocab_size() + 5, 100), first_100);
  EXPECT_THROW(count_tokens(dataset, Split::kTrain, tokenizer_.vocab_size() - 1), Error);
  EXPECT_THROW(count_tokens(dataset, Split::kTrain, tokenizer_.vocab_size(), -1), Error);
}

TEST_F(DatasetTest, ShardsEndAtDocumentEndsPastTheirSize) {
  TokenDataset dataset = TokenDataset::open(dataset_dir());
  const std::vector<TokenShard>& shards = dataset.shards(Split::kTrain);
  ASSERT_GE(shards.size(), 3u);
  for (std::size_t s = 0; s < shards.size(); ++s) {
    EXPECT_EQ(shards[s].token(shards[s].size() - 1), dataset.eos_id()) << "shard " << s;
    if (s + 1 < shards.size()) {
      EXPECT_GE(shards[s].size(), 300) << "shard " << s;
    }
  }
  for (Split split : {Split::kTrain, Split::kValidation}) {
    int64_t documents = 0;
    for (const ShardInfo& info : dataset.manifest().split(split).shards) documents += info.documents;
    EXPECT_EQ(documents, dataset.num_documents(split));
  }
}

TEST_F(DatasetTest, ManifestRecordsTheTokenizer) {
  TokenDataset dataset = TokenDataset::open(dataset_dir());
  const DatasetManifest& m = dataset.manifest();
  EXPECT_EQ(m.tokenizer_hash, tokenizer_.hash());
  EXPECT_EQ(m.vocab_size, tokenizer_.vocab_size());
  EXPECT_EQ(m.eos_id, 1);
  EXPECT_EQ(m.bos_id, 0);
  EXPECT_EQ(m.pad_id, 2);
  EXPECT_EQ(m.token_dtype, TokenDType::kUint16);
  EXPECT_EQ(dataset.load_tokenizer().hash(), tokenizer_.hash());
  EXPECT_EQ(m.corpus["documents"], 30);
  // Round trip of the manifest's own JSON.
  DatasetManifest reread = DatasetManifest::from_json(nlohmann::json::parse(m.to_json().dump()), "x");
  EXPECT_EQ(reread.to_json().dump(), m.to_json().dump());
}

TEST_F(DatasetTest, ResultDoesNotDependOnThreads) {
  PrepareOptions options = prepare_options(corpus_.path(), output_ / "one_thread");
  options.threads = 1;
  prepare_dataset(tokenizer_, options);
  options = prepare_options(corpus_.path(), output_ / "three_threads");
  options.threads = 3;
  prepare_dataset(tokenizer_, options);
  auto splits = [](const std::string& dir) {
    return TokenDataset::open(dir).manifest().to_json()["splits"].dump();
  };
  EXPECT_EQ(splits(output_ / "one_thread"), splits(dataset_dir()));
  EXPECT_EQ(splits(output_ / "three_threads"), splits(dataset_dir()));
}

TEST_F(DatasetTest, CorruptedShardIsNamed) {
  std::string dir = copy_dataset();
  std::string shard = dir + "/train-00001.bin";
  {
    std::fstream file(shard, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(20);
    file.put('\x7F');
  }
  expect_error([&] { TokenDataset::open(dir); }, "train-00001.bin' is corrupted");
  DatasetOpenOptions fast;
  fast.verify_checksums = false;
  EXPECT_NO_THROW(TokenDataset::open(dir, nullptr, fast));
}

TEST_F(DatasetTest, TruncatedShardIsNamed) {
  std::string dir = copy_dataset();
  std::string shard = dir + "/validation-00000.bin";
  fs::resize_file(shard, fs::file_size(shard) - 2);
  DatasetOpenOptions fast;
  fast.verify_checksums = false;  // the size check does not need the checksum
  expect_error([&] { TokenDataset::open(dir, nullptr, fast); }, "validation-00000.bin' is truncated");
}

TEST_F(DatasetTest, WrongHeaderIsNamed) {
  std::string dir = copy_dataset();
  {
    std::fstream file(dir + "/train-00000.bin", std::ios::in | std::ios::out | std::ios::binary);
    file.put('X');
  }
  DatasetOpenOptions fast;
  fast.verify_checksums = false;
  expect_error([&] { TokenDataset::open(dir, nullptr, fast); }, "wrong header");
}

TEST_F(DatasetTest, MismatchedTokenizerIsNamed) {
  tokenizer::Tokenizer other = corpus_tokenizer(6 + 256 + 50);
  expect_error([&] { TokenDataset::open(dataset_dir(), &other); }, "another tokenizer");
  std::string dir = copy_dataset();
  other.save(dir + "/tokenizer.json");
  expect_error([&] { TokenDataset::open(dir); }, "does not match the manifest");
}

TEST_F(DatasetTest, DamagedManifestIsNamed) {
  std::string dir = copy_dataset();
  nlohmann::json manifest = nlohmann::json::parse(io::read_file(dir + "/manifest.json"));
  nlohmann::json tampered = manifest;
  tampered["splits"]["train"]["shards"][0]["tokens"] = tampered["splits"]["train"]["shards"][0]["tokens"].get<int64_t>() + 1;
  write_text(dir + "/manifest.json", tampered.dump());
  expect_error([&] { TokenDataset::open(dir); }, "its shards hold");
  tampered = manifest;
  tampered["splits"]["validation"] = 7;  // found by fuzz/dataset_manifest_fuzzer: a JSON library error escaped
  write_text(dir + "/manifest.json", tampered.dump());
  expect_error([&] { TokenDataset::open(dir); }, "splits.validation: expected an object, found number");
  tampered = manifest;
  tampered["token_dtype"] = "uint8";
  write_text(dir + "/manifest.json", tampered.dump());
  expect_error([&] { TokenDataset::open(dir); }, "uint8");
  tampered = manifest;
  tampered["splits"]["train"]["shards"][0]["file"] = "../escape.bin";
  write_text(dir + "/manifest.json", tampered.dump());
  expect_error([&] { TokenDataset::open(dir); }, "is not a file name");
  write_text(dir + "/manifest.json", manifest.dump());
  fs::remove(dir + "/train-00002.bin");
  expect_error([&] { TokenDataset::open(dir); }, "train-00002.bin' listed in the manifest does not exist");
  fs::remove(dir + "/manifest.json");
  expect_error([&] { TokenDataset::open(dir); }, "not a nextn dataset");
}

TEST_F(DatasetTest, OutputDirectoryRules) {
  PrepareOptions options = prepare_options(corpus_.path(), dataset_dir());
  expect_error([&] { prepare_dataset(tokenizer_, options); }, "--overwrite");
  options.overwrite = true;
  prepare_dataset(tokenizer_, options);
  EXPECT_NO_THROW(TokenDataset::open(dataset_dir()));
  write_text(dataset_dir() + "/notes.txt", "mine");
  expect_error([&] { prepare_dataset(tokenizer_, options); }, "notes.txt");
}

TEST(Dataset, EmptyInputIsAClearError) {
  TempDir corpus, output;
  write_text(corpus / "only.bin", std::string("\0\1\2", 3));
  tokenizer::Tokenizer tok = corpus_tokenizer();
  expect_error([&] { prepare_dataset(tok, prepare_options(corpus.path(), output / "d")); }, "no usable documents");
  EXPECT_FALSE(fs::exists(output / "d/manifest.json"));
  TempDir empty;
  expect_error([&] { prepare_dataset(tok, prepare_options(empty.path(), output / "e")); }, "has no files");
}

TEST(Dataset, LargeVocabularyUsesUint32) {
  TempDir corpus, output;
  std::vector<std::string> documents = write_corpus(corpus.path(), 5);
  tokenizer::TokenizerSpec spec = corpus_tokenizer().spec();
  spec.added_tokens.push_back({70000, "<|far|>", true, false});
  tokenizer::Tokenizer tok(spec);
  ASSERT_EQ(tok.vocab_size(), 70001);
  prepare_dataset(tok, prepare_options(corpus.path(), output / "d"));
  TokenDataset dataset = TokenDataset::open(output / "d", &tok);
  EXPECT_EQ(dataset.manifest().token_dtype, TokenDType::kUint32);
  std::vector<int32_t> expected;
  for (int i = 0; i < 5; ++i) {
    if (i == 4) continue;  // validation
    std::vector<int32_t> ids = tok.encode_ordinary(documents[i]);
    expected.insert(expected.end(), ids.begin(), ids.end());
    expected.push_back(tok.eos_id());
  }
  EXPECT_EQ(shard_stream(dataset, Split::kTrain), expected);
  EXPECT_EQ(fs::file_size(output / "d/train-00000.bin"), 16 + 4 * uint64_t(dataset.shards(Split::kTrain)[0].size()));
}

// Found by fuzz/token_shard_fuzzer: a uint32 token of 2^31 or more read as a negative int32 and
// passed the range check, to index the embedding with a negative id later.
TEST(Dataset, AUint32TokenPastTheInt32RangeIsRefused) {
  testing::TempDir dir;
  char header[kShardHeaderBytes];
  write_shard_header(header, TokenDType::kUint32);
  const uint32_t tokens[2] = {5, 0xFFFFFFFFu};
  std::string file(header, kShardHeaderBytes);
  file.append(reinterpret_cast<const char*>(tokens), sizeof tokens);
  io::write_file_atomic(dir / "train-00000.bin", file);
  ShardInfo info{"train-00000.bin", 2, 1, sha256_hex(file)};
  try {
    TokenShard shard(dir / "train-00000.bin", info, TokenDType::kUint32, 70000, /*verify_contents=*/true);
    FAIL() << "accepted token id 4294967295 in a vocabulary of 70000";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds token id 4294967295 at 1, outside the vocabulary of 70000"),
              std::string::npos)
        << e.what();
  }
}

TEST(Split, EveryFifthDocumentAtFractionOneFifth) {
  const int64_t ppm = fraction_to_ppm(0.2);
  int validation = 0;
  for (int64_t i = 0; i < 100; ++i) {
    bool held_out = split_of_document(i, ppm) == Split::kValidation;
    EXPECT_EQ(held_out, i % 5 == 4) << i;
    validation += held_out;
  }
  EXPECT_EQ(validation, 20);
  EXPECT_EQ(split_of_document(0, fraction_to_ppm(0.5)), Split::kTrain);  // the first document always trains
  EXPECT_THROW(fraction_to_ppm(1.0), Error);
}

}  // namespace
}  // namespace nextn::data
