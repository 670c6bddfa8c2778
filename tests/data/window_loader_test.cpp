// Training windows (determinism, resume, contents, segment ids) and evaluation windows.
#include <gtest/gtest.h>

#include <set>

#include "data/data_fixtures.h"
#include "nextn/data/token_dataset.h"
#include "nextn/data/window_loader.h"
#include "nextn/util/error.h"

namespace nextn::data {
namespace {

using testing::TempDir;
using testing::expect_error;

// One dataset for the whole file: 30 generated documents in shards of ~300 tokens.
const TokenDataset& shared_dataset() {
  static TempDir corpus, output;
  static TokenDataset dataset = [] {
    testing::write_corpus(corpus.path(), 30);
    prepare_dataset(testing::corpus_tokenizer(), testing::prepare_options(corpus.path(), output / "d"));
    return TokenDataset::open(output / "d");
  }();
  return dataset;
}

bool equal(const Batch& a, const Batch& b) {
  return torch::equal(a.tokens, b.tokens) && torch::equal(a.segment_ids, b.segment_ids);
}

TEST(WindowLoader, SameSeedSameBatches) {
  WindowLoader a(shared_dataset(), Split::kTrain, 4, 32, 7);
  WindowLoader b(shared_dataset(), Split::kTrain, 4, 32, 7);
  WindowLoader c(shared_dataset(), Split::kTrain, 4, 32, 8);
  for (int i = 0; i < 5; ++i) {
    Batch x = a.next(), y = b.next(), z = c.next();
    EXPECT_TRUE(equal(x, y));
    EXPECT_FALSE(torch::equal(x.tokens, z.tokens));
    EXPECT_EQ(x.tokens.sizes(), (std::vector<int64_t>{4, 33}));
    EXPECT_EQ(x.tokens.scalar_type(), torch::kInt64);
    EXPECT_EQ(x.segment_ids.scalar_type(), torch::kInt32);
  }
}

TEST(WindowLoader, RowsAreSlicesOfOneShardWithSegmentIdsFromEos) {
  const TokenDataset& dataset = shared_dataset();
  WindowLoader loader(dataset, Split::kTrain, 8, 40, 3);
  for (int b = 0; b < 4; ++b) {
    Batch batch = loader.next();
    for (int64_t row = 0; row < 8; ++row) {
      auto [shard_index, start] = loader.window_start(uint64_t(b * 8 + row));
      const TokenShard& shard = dataset.shards(Split::kTrain)[shard_index];
      ASSERT_LE(start + 41, shard.size());
      int32_t segment = 0;
      for (int64_t j = 0; j <= 40; ++j) {
        int64_t token = batch.tokens[row][j].item<int64_t>();
        ASSERT_EQ(token, shard.token(start + j));
        ASSERT_EQ(batch.segment_ids[row][j].item<int32_t>(), segment) << "row " << row << " position " << j;
        if (token == dataset.eos_id()) ++segment;  // the next token starts a new document
      }
    }
  }
}

TEST(WindowLoader, StartsReachEveryShardAndBothEnds) {
  const TokenDataset& dataset = shared_dataset();
  const int64_t window = 16;
  WindowLoader loader(dataset, Split::kTrain, 1, window, 11);
  std::set<std::size_t> shards_seen;
  std::set<int64_t> first_shard_starts;
  for (uint64_t k = 0; k < 5000; ++k) {
    auto [shard, start] = loader.window_start(k);
    shards_seen.insert(shard);
    if (shard == 0) first_shard_starts.insert(start);
  }
  EXPECT_EQ(shards_seen.size(), dataset.shards(Split::kTrain).size());
  EXPECT_EQ(*first_shard_starts.begin(), 0);
  EXPECT_EQ(*first_shard_starts.rbegin(), dataset.shards(Split::kTrain)[0].size() - window - 1);
}

TEST(WindowLoader, RestoredLoaderContinuesExactly) {
  WindowLoader original(shared_dataset(), Split::kTrain, 4, 32, 123);
  for (int i = 0; i < 3; ++i) original.next();
  std::string saved = original.state().dump();
  std::vector<Batch> expected;
  for (int i = 0; i < 3; ++i) expected.push_back(original.next());

  WindowLoader resumed(shared_dataset(), Split::kTrain, 4, 32, 123);
  resumed.restore(nlohmann::json::parse(saved));
  EXPECT_EQ(resumed.windows_drawn(), 12);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(equal(resumed.next(), expected[i])) << "batch " << i;
}

TEST(WindowLoader, RestoreRejectsAStateOfAnotherLoader) {
  WindowLoader original(shared_dataset(), Split::kTrain, 4, 32, 123);
  nlohmann::json state = original.state();
  WindowLoader other_seed(shared_dataset(), Split::kTrain, 4, 32, 124);
  expect_error([&] { other_seed.restore(state); }, "seed");
  WindowLoader other_window(shared_dataset(), Split::kTrain, 4, 16, 123);
  expect_error([&] { other_window.restore(state); }, "window");
  WindowLoader other_split(shared_dataset(), Split::kValidation, 4, 32, 123);
  expect_error([&] { other_split.restore(state); }, "split");
  nlohmann::json other_data = state;
  other_data["dataset"] = "sha256:0";
  expect_error([&] { original.restore(other_data); }, "other data");
  expect_error([&] { original.restore(nlohmann::json::object()); }, "lacks");
}

TEST(WindowLoader, WindowLargerThanEveryShardIsAClearError) {
  expect_error([] { WindowLoader loader(shared_dataset(), Split::kValidation, 2, 100000, 1); }, "no shard with 100001 tokens");
}

TEST(Batch, SameDocumentMaskByHand) {
  torch::Tensor segments = torch::tensor({0, 0, 1, 1, 2}, torch::kInt32).view({1, 5});
  EXPECT_TRUE(torch::equal(same_document_mask(segments, 1), torch::tensor({true, false, true, false}).view({1, 4})));
  EXPECT_TRUE(torch::equal(same_document_mask(segments, 2), torch::tensor({false, false, false}).view({1, 3})));
  EXPECT_TRUE(torch::equal(same_document_mask(segments, 0), torch::ones({1, 5}, torch::kBool)));
  int64_t tokens[6] = {5, 1, 7, 1, 1, 9};  // EOS = 1
  int32_t ids[6];
  compute_segment_ids(tokens, 6, 1, ids);
  EXPECT_EQ(std::vector<int32_t>(ids, ids + 6), (std::vector<int32_t>{0, 0, 1, 1, 2, 3}));
}

TEST(EvalWindows, ServesEveryNonOverlappingWindowInOrder) {
  const TokenDataset& dataset = shared_dataset();
  const int64_t window = 20;
  EvalWindows eval(dataset, Split::kValidation, 3, window);
  int64_t expected_windows = 0;
  std::vector<int64_t> expected_tokens;
  for (const TokenShard& shard : dataset.shards(Split::kValidation)) {
    int64_t windows = shard.size() / (window + 1);
    expected_windows += windows;
    for (int64_t i = 0; i < windows * (window + 1); ++i) expected_tokens.push_back(shard.token(i));
  }
  ASSERT_GT(expected_windows, 3);
  EXPECT_EQ(eval.num_windows(), expected_windows);
  EXPECT_EQ(eval.num_batches(), (expected_windows + 2) / 3);
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<int64_t> served;
    Batch batch;
    int64_t batches = 0, last_rows = 0;
    while (eval.next(batch)) {
      ++batches;
      last_rows = batch.tokens.size(0);
      torch::Tensor flat = batch.tokens.reshape({-1});
      served.insert(served.end(), flat.data_ptr<int64_t>(), flat.data_ptr<int64_t>() + flat.numel());
    }
    EXPECT_EQ(served, expected_tokens);
    EXPECT_EQ(batches, eval.num_batches());
    EXPECT_EQ(last_rows, expected_windows - 3 * (batches - 1));
    eval.reset();
  }
}

}  // namespace
}  // namespace nextn::data
