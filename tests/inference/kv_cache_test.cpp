// The latent cache: its size per token, preallocation, appends past the capacity, rollback, and
// the error for a prompt that does not fit.
#include <gtest/gtest.h>

#include "inference_test_support.h"
#include "nextn/inference/cached_forward.h"
#include "nextn/inference/kv_cache.h"
#include "nextn/util/error.h"

namespace nextn::inference {
namespace {

using testing::tiny_config;

TEST(KvCache, BytesPerTokenIsLatentPlusRopeTimesLayersTimesDtypeSize) {
  ModelConfig config = tiny_config();  // kv_lora_rank 16, qk_rope_head_dim 4, 3 layers
  struct Case {
    torch::ScalarType dtype;
    int64_t element_size;
  };
  for (Case c : {Case{torch::kFloat, 4}, Case{torch::kDouble, 8}, Case{torch::kBFloat16, 2}}) {
    auto cache = KvCache::for_main_model(config, 1, 64, torch::TensorOptions().dtype(c.dtype));
    EXPECT_EQ(cache.bytes_per_token(), (16 + 4) * 3 * c.element_size);
    // The figure is what is really stored: nothing per head, nothing else.
    EXPECT_EQ(cache.bytes_allocated(), 64 * cache.bytes_per_token());
    auto mtp = KvCache::for_mtp_module(config, 2, 10, torch::TensorOptions().dtype(c.dtype));
    EXPECT_EQ(mtp.bytes_per_token(), (16 + 4) * 1 * c.element_size);
    EXPECT_EQ(mtp.bytes_allocated(), 2 * 10 * mtp.bytes_per_token());
  }
  // DeepSeek-V3's figure: 576 values per layer and token, 61 layers, bf16.
  ModelConfig v3 = config;
  v3.kv_lora_rank = 512;
  v3.qk_rope_head_dim = 64;
  v3.num_hidden_layers = 61;
  auto cache = KvCache::for_main_model(v3, 1, 1, torch::TensorOptions().dtype(torch::kBFloat16));
  EXPECT_EQ(cache.bytes_per_token(), 576 * 61 * 2);
}

TEST(KvCache, AppendsAdvanceAndOverflowIsAnError) {
  ModelConfig config = tiny_config();
  DeepSeekV3 model = testing::random_model(config, 31);
  auto cache = KvCache::for_main_model(config, 1, 6, torch::TensorOptions().dtype(torch::kDouble));
  auto ids = torch::randint(config.vocab_size, {1, 4}, torch::kLong);
  run_main_model_cached(*model, ids, cache);
  EXPECT_EQ(cache.length(), 4);
  EXPECT_EQ(cache.c_kv(0).sizes(), torch::IntArrayRef({1, 4, config.kv_lora_rank}));
  EXPECT_THROW(run_main_model_cached(*model, ids.narrow(1, 0, 3), cache), Error);
  EXPECT_EQ(cache.length(), 4);  // a refused append changes nothing
  run_main_model_cached(*model, ids.narrow(1, 0, 2), cache);
  EXPECT_EQ(cache.free_slots(), 0);
  EXPECT_THROW(cache.truncate(7), Error);
  cache.truncate(3);
  EXPECT_EQ(cache.length(), 3);
}

TEST(KvCache, RolledBackAppendEqualsNeverHavingAppended) {
  ModelConfig config = tiny_config();
  DeepSeekV3 model = testing::random_model(config, 32);
  auto options = torch::TensorOptions().dtype(torch::kDouble);
  auto ids = torch::randint(config.vocab_size, {1, 8}, torch::kLong);
  auto wrong = torch::randint(config.vocab_size, {1, 3}, torch::kLong);
  // a: 5 tokens, 3 wrong ones appended and rolled back, then the remaining 3 tokens.
  auto a = KvCache::for_main_model(config, 1, 10, options);
  run_main_model_cached(*model, ids.narrow(1, 0, 5), a);
  run_main_model_cached(*model, wrong, a);
  a.truncate(5);
  auto logits_a = run_main_model_cached(*model, ids.narrow(1, 5, 3), a).logits;
  // b: the 8 tokens, never seeing the wrong ones.
  auto b = KvCache::for_main_model(config, 1, 10, options);
  auto logits_b = run_main_model_cached(*model, ids, b).logits.narrow(1, 5, 3);
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    EXPECT_LT(testing::max_abs_diff(a.c_kv(layer), b.c_kv(layer)), 1e-12);
    EXPECT_LT(testing::max_abs_diff(a.k_pe(layer), b.k_pe(layer)), 1e-12);
  }
  EXPECT_LT(testing::max_abs_diff(logits_a, logits_b), 1e-10);
}

// After a tree of drafts: the accepted path's entries move down to follow the entries before the
// tree, in order, and the other nodes' are forgotten.
TEST(KvCache, KeepPathMovesThePathsEntriesAndDropsTheRest) {
  ModelConfig config = tiny_config();
  auto cache = KvCache::for_main_model(config, 1, 16, torch::TensorOptions().dtype(torch::kDouble));
  for (int64_t layer = 0; layer < cache.num_layers(); ++layer) {
    auto slot = cache.slot(layer);
    slot.c_kv.copy_(torch::arange(16, torch::kDouble).view({1, 16, 1}).expand_as(slot.c_kv) + 100 * layer);
    slot.k_pe.copy_(-torch::arange(16, torch::kDouble).view({1, 16, 1}).expand_as(slot.k_pe) - 100 * layer);
  }
  cache.advance(10);  // 4 entries before the tree, then a tree of 6 (root at index 4)
  cache.keep_path(4, {0, 2, 5});
  ASSERT_EQ(cache.length(), 7);
  const std::vector<double> expected{0, 1, 2, 3, 4, 6, 9};
  for (int64_t layer = 0; layer < cache.num_layers(); ++layer) {
    for (int64_t i = 0; i < 7; ++i) {
      EXPECT_EQ(cache.c_kv(layer)[0][i][0].item<double>(), expected[i] + 100 * layer) << layer << " " << i;
      EXPECT_EQ(cache.k_pe(layer)[0][i][1].item<double>(), -expected[i] - 100 * layer) << layer << " " << i;
    }
  }
  EXPECT_THROW(cache.keep_path(4, {0, 5}), Error);     // beyond the 7 held
  EXPECT_THROW(cache.keep_path(4, {1, 0}), Error);     // not increasing
  cache.keep_path(2, {});
  EXPECT_EQ(cache.length(), 2);
}

TEST(KvCache, PositionsBeyondTheModelsContextAreAnError) {
  ModelConfig config = tiny_config();
  config.max_position_embeddings = 8;
  DeepSeekV3 model = testing::random_model(config, 33);
  auto cache = KvCache::for_main_model(config, 1, 16, torch::TensorOptions().dtype(torch::kDouble));
  EXPECT_THROW(run_main_model_cached(*model, torch::zeros({1, 9}, torch::kLong), cache), Error);
}

}  // namespace
}  // namespace nextn::inference
