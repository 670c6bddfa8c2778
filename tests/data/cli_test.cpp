// The commands end to end, through the nextn executable (few calls: each process start loads
// libtorch, about a second).
#include <gtest/gtest.h>

#include <cstdlib>

#include "data/data_fixtures.h"
#include "test_support.h"
#include "nextn/data/token_dataset.h"

namespace nextn::data {
namespace {

using testing::TempDir;

// Runs nextn with `arguments`; returns the exit code and fills `output` with stdout + stderr.
int run_nextn(const std::string& arguments, const TempDir& dir, std::string& output) {
  return nextn::testing::run_nextn(arguments, dir.path(), output);
}

TEST(Cli, TrainPrepareAndInspect) {
  TempDir corpus, work;
  testing::write_corpus(corpus.path(), 20);
  std::string output;
  ASSERT_EQ(run_nextn("tokenizer train --input " + corpus.path() + " --vocab-size 300 -o " + (work / "tok.json"),
                      work, output), 0) << output;
  tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(work / "tok.json");
  EXPECT_EQ(tok.vocab_size(), 300);

  ASSERT_EQ(run_nextn("data prepare --input " + corpus.path() + " -t " + (work / "tok.json") + " -o " +
                          (work / "ds") + " --validation-fraction 0.1 --threads 2",
                      work, output), 0) << output;
  TokenDataset dataset = TokenDataset::open(work / "ds", &tok);
  EXPECT_EQ(dataset.num_documents(Split::kTrain) + dataset.num_documents(Split::kValidation), 20);
  EXPECT_EQ(dataset.num_documents(Split::kValidation), 2);

  ASSERT_EQ(run_nextn("data info -d " + (work / "ds"), work, output), 0) << output;
  EXPECT_NE(output.find("train: " + std::to_string(dataset.num_tokens(Split::kTrain)) + " tokens"), std::string::npos)
      << output;

}

TEST(Cli, ErrorsExitWithOneAndNameTheProblem) {
  TempDir work;
  std::string output;
  EXPECT_EQ(run_nextn("data prepare --input " + (work / "missing") + " -o " + (work / "ds"), work, output), 1);
  EXPECT_NE(output.find("does not exist"), std::string::npos) << output;
  io::write_file_atomic(work / "bad.json", "{\"model\": {\"type\": \"Unigram\"}}");
  EXPECT_EQ(run_nextn("tokenizer info -t " + (work / "bad.json"), work, output), 1);
  EXPECT_NE(output.find("bad.json"), std::string::npos) << output;
}

}  // namespace
}  // namespace nextn::data
