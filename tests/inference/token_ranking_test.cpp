// The token frequency ranking behind a drafter's vocabulary: ranking rules, the file's round trip,
// and a named error for every field a damaged or hand-edited draft_vocab.json can get wrong.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "nextn/inference/token_ranking.h"
#include "nextn/io/atomic_file.h"
#include "nextn/util/error.h"
#include "test_support.h"

namespace nextn::inference {
namespace {

using testing::TempDir;

const std::string kHash = "sha256:" + std::string(64, 'a');

TEST(TokenRanking, MostFrequentFirstTiesByIdUnseenLast) {
  //                    id: 0  1  2  3  4  5
  const std::vector<int64_t> counts = {3, 0, 7, 3, 0, 9};
  TokenRanking ranking = rank_tokens(counts, "hand", kHash);
  EXPECT_EQ(ranking.ranked_ids, (std::vector<int64_t>{5, 2, 0, 3, 1, 4}));
  EXPECT_EQ(ranking.counts, (std::vector<int64_t>{9, 7, 3, 3, 0, 0}));
  EXPECT_EQ(ranking.tokens_counted(), 22);
  EXPECT_EQ(ranking.most_frequent(3), (std::vector<int64_t>{5, 2, 0}));
  EXPECT_THROW(ranking.most_frequent(0), Error);
  EXPECT_THROW(ranking.most_frequent(7), Error);
  EXPECT_THROW(rank_tokens({1, -1}, "negative", kHash), Error);
  EXPECT_THROW(rank_tokens({1, 2}, "no tokenizer", ""), Error);
}

TEST(TokenRanking, SavedRankingLoadsBackEqual) {
  TempDir dir("ranking");
  TokenRanking ranking = rank_tokens({4, 1, 4, 0, 2, 8, 1}, "data/x (train)", kHash);
  save_token_ranking(dir.file(kTokenRankingFile), ranking);
  TokenRanking loaded = load_token_ranking(dir.file(kTokenRankingFile));
  EXPECT_EQ(loaded.ranked_ids, ranking.ranked_ids);
  EXPECT_EQ(loaded.counts, ranking.counts);
  EXPECT_EQ(loaded.source, "data/x (train)");
  EXPECT_EQ(loaded.tokenizer_hash, kHash);
}

TEST(TokenRanking, ARankingOfAnotherTokenizerOrSizeIsRefused) {
  TempDir dir("ranking_for");
  const std::string path = dir.file(kTokenRankingFile);
  save_token_ranking(path, rank_tokens({4, 1, 4, 0}, "hand", kHash));
  EXPECT_EQ(load_token_ranking_for(path, 4, kHash).ranked_ids, (std::vector<int64_t>{0, 2, 1, 3}));
  const std::string other = "sha256:" + std::string(64, 'b');
  for (const auto& [vocab_size, hash, fragment] :
       {std::tuple<int64_t, std::string, std::string>{4, other, "ranks the tokens of another tokenizer"},
        {5, kHash, "ranks 4 tokens but the model's vocab_size is 5"}}) {
    try {
      load_token_ranking_for(path, vocab_size, hash);
      ADD_FAILURE() << "no error; expected one containing '" << fragment << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  }
}

// The saved file of rank_tokens({4, 1, 4, 0}), edited by `edit`; the error must contain `fragment`.
void expect_load_error(const std::function<void(nlohmann::json&)>& edit, const std::string& fragment) {
  TempDir dir("ranking_bad");
  const std::string path = dir.file("draft_vocab.json");
  save_token_ranking(path, rank_tokens({4, 1, 4, 0}, "hand", kHash));
  auto root = nlohmann::json::parse(io::read_file(path));
  edit(root);
  io::write_file_atomic(path, root.dump());
  try {
    load_token_ranking(path);
    ADD_FAILURE() << "no error; expected one containing '" << fragment << "'";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(fragment), std::string::npos) << message;
    EXPECT_NE(message.find(path), std::string::npos) << message;
  }
}

TEST(TokenRanking, EveryFieldIsValidated) {
  using json = nlohmann::json;
  expect_load_error([](json& j) { j.erase("counts"); }, "missing field 'counts'");
  expect_load_error([](json& j) { j["extra"] = 1; }, "unknown field 'extra'");
  expect_load_error([](json& j) { j["format"] = "something-else"; }, "'format' must be");
  expect_load_error([](json& j) { j["version"] = 3; }, "version 3 is not supported");
  expect_load_error([](json& j) { j["version"] = 1; j.erase("tokenizer_hash"); }, "version 1 does not say which tokenizer");
  expect_load_error([](json& j) { j["vocab_size"] = "4"; }, "'vocab_size' must be an integer");
  expect_load_error([](json& j) { j["vocab_size"] = 0; }, "vocab_size 0 is out of range");
  expect_load_error([](json& j) { j["vocab_size"] = 5; }, "'ranked_token_ids' has 4 entries, vocab_size is 5");
  expect_load_error([](json& j) { j["source"] = 3; }, "'source' must be a string");
  expect_load_error([](json& j) { j.erase("tokenizer_hash"); }, "missing field 'tokenizer_hash'");
  expect_load_error([](json& j) { j["tokenizer_hash"] = 7; }, "'tokenizer_hash' must be a string");
  expect_load_error([](json& j) { j["tokenizer_hash"] = "sha256:abc"; }, "64 lower-case hex digits");
  expect_load_error([](json& j) { j["tokenizer_hash"] = "sha256:" + std::string(64, 'A'); }, "64 lower-case hex");
  expect_load_error([](json& j) { j["ranked_token_ids"] = json::object(); }, "'ranked_token_ids' must be an array");
  expect_load_error([](json& j) { j["ranked_token_ids"][1] = 1.5; }, "ranked_token_ids[1] must be an integer");
  expect_load_error([](json& j) { j["ranked_token_ids"][3] = 4; }, "ranked_token_ids[3] = 4 is outside [0, 4)");
  expect_load_error([](json& j) { j["ranked_token_ids"][3] = 0; }, "token 0 is ranked twice");
  expect_load_error([](json& j) { j["counts"][3] = -1; }, "counts[3] = -1 is negative");
  expect_load_error([](json& j) { j["counts"][2] = 5; }, "counts[2] = 5 exceeds counts[1] = 4");
  expect_load_error(  // ranked 0, 2 (both 4): swapped, the tie is out of id order
      [](json& j) { j["ranked_token_ids"][0] = 2; j["ranked_token_ids"][1] = 0; }, "not in id order");
  expect_load_error([](json& j) { j["tokens_counted"] = 10; }, "tokens_counted is 10 but the counts sum to 9");
  expect_load_error([](json& j) { j["counts"][0] = INT64_MAX; j["counts"][1] = INT64_MAX; }, "the counts overflow");
}

TEST(TokenRanking, AFileThatIsNotJsonOrMissingIsNamed) {
  TempDir dir("ranking_missing");
  EXPECT_THROW(load_token_ranking(dir.file("nope.json")), Error);
  io::write_file_atomic(dir.file("bad.json"), "{\"format\": ");
  EXPECT_THROW(load_token_ranking(dir.file("bad.json")), Error);
  io::write_file_atomic(dir.file("dup.json"), "{\"format\": \"nextn-token-ranking\", \"format\": \"x\"}");
  EXPECT_THROW(load_token_ranking(dir.file("dup.json")), Error);
}

}  // namespace
}  // namespace nextn::inference
