// The cached (incremental) forward against the training forward: the same logits at every
// position for the main model and every MTP depth, whatever the split of the sequence into
// appends, in both MLA forms; the absorbed form against the naive one on random inputs.
#include <gtest/gtest.h>

#include "inference_test_support.h"
#include "nextn/inference/cached_forward.h"
#include "nextn/inference/kv_cache.h"

namespace nextn::inference {
namespace {

using testing::max_abs_diff;
using testing::random_model;
using testing::tiny_config;

torch::TensorOptions options_of(DeepSeekV3& model) {
  return torch::TensorOptions().dtype(model->embed_tokens->weight.scalar_type());
}

// Runs the main model over `ids` [B, T] in appends of the given sizes; returns logits and h^0 for
// every position, concatenated.
MainModelStep run_in_chunks(DeepSeekV3& model, const torch::Tensor& ids, const std::vector<int64_t>& chunks,
                            AttentionForm form) {
  KvCache cache = KvCache::for_main_model(model->config(), ids.size(0), ids.size(1), options_of(model));
  std::vector<torch::Tensor> logits, hidden;
  int64_t start = 0;
  for (int64_t size : chunks) {
    auto step = run_main_model_cached(*model, ids.narrow(1, start, size), cache, LogitsFor::kEveryPosition, form);
    logits.push_back(step.logits);
    hidden.push_back(step.hidden);
    start += size;
    EXPECT_EQ(cache.length(), start);
  }
  EXPECT_EQ(start, ids.size(1));
  return {torch::cat(logits, 1), torch::cat(hidden, 1)};
}

const std::vector<std::vector<int64_t>> kSplits = {
    {12},                                  // one prefill
    {5, 1, 1, 1, 1, 1, 1, 1},              // prefill, then decode token by token
    {1, 1, 3, 1, 4, 2},                    // multi-token appends (verifying drafts)
    {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},  // decode from the first token
};

TEST(CachedForward, MainModelMatchesTheFullForwardAtEveryPosition) {
  for (ModelConfig config : {tiny_config(), testing::parallel_config()}) {
    DeepSeekV3 model = random_model(config, 21);
    auto ids = torch::randint(config.vocab_size, {1, 12}, torch::kLong);
    auto full = model->forward(ids, ForwardOptions{false, false});
    for (AttentionForm form : {AttentionForm::kAuto, AttentionForm::kAbsorbed, AttentionForm::kNaive}) {
      for (const auto& split : kSplits) {
        auto cached = run_in_chunks(model, ids, split, form);
        EXPECT_LT(max_abs_diff(cached.logits, full.logits), 1e-10) << "form " << static_cast<int>(form);
        EXPECT_LT(max_abs_diff(cached.hidden, full.hidden), 1e-10);
      }
    }
  }
}

TEST(CachedForward, BatchOfTwoMatchesTheFullForward) {
  ModelConfig config = tiny_config();
  DeepSeekV3 model = random_model(config, 22);
  auto ids = torch::randint(config.vocab_size, {2, 9}, torch::kLong);
  auto full = model->forward(ids, ForwardOptions{false, false});
  auto cached = run_in_chunks(model, ids, {4, 1, 3, 1}, AttentionForm::kAuto);
  EXPECT_LT(max_abs_diff(cached.logits, full.logits), 1e-10);
}

TEST(CachedForward, LastPositionLogitsOnly) {
  ModelConfig config = tiny_config();
  DeepSeekV3 model = random_model(config, 23);
  auto ids = torch::randint(config.vocab_size, {1, 7}, torch::kLong);
  auto full = model->forward(ids, ForwardOptions{false, false});
  KvCache cache = KvCache::for_main_model(config, 1, 16, options_of(model));
  auto step = run_main_model_cached(*model, ids, cache, LogitsFor::kLastPosition);
  ASSERT_EQ(step.logits.size(1), 1);
  EXPECT_LT(max_abs_diff(step.logits, full.logits.narrow(1, 6, 1)), 1e-10);
}

// Every MTP depth run incrementally, each with its own cache, fed exactly what the training
// forward feeds it: h^{k-1}_i (h^0_i for parallel heads) and t_{i+k}.
void check_mtp_depths(const ModelConfig& config, const std::vector<int64_t>& split) {
  DeepSeekV3 model = random_model(config, 24);
  const int64_t length = 12;
  auto ids = torch::randint(config.vocab_size, {1, length}, torch::kLong);
  auto full = model->forward(ids, ForwardOptions{true, false});
  ASSERT_EQ(static_cast<int64_t>(full.mtp_logits.size()), config.mtp_depth());
  torch::Tensor previous = run_in_chunks(model, ids, {length}, AttentionForm::kAuto).hidden;  // h^0
  const torch::Tensor h0 = previous;
  for (int64_t k = 1; k <= config.mtp_depth(); ++k) {
    const int64_t span = length - k;
    KvCache cache = KvCache::for_mtp_module(config, 1, span, options_of(model));
    auto input = config.mtp_kind == MtpKind::kSequential ? previous : h0;
    std::vector<torch::Tensor> outputs;
    int64_t start = 0;
    for (int64_t size : split) {
      size = std::min(size, span - start);
      if (size <= 0) break;
      torch::Tensor tokens;
      if (config.mtp_kind == MtpKind::kSequential) tokens = ids.narrow(1, start + k, size);
      outputs.push_back(run_mtp_module_cached(*model, k, input.narrow(1, start, size), tokens, cache));
      start += size;
    }
    ASSERT_EQ(start, span);
    auto h = torch::cat(outputs, 1);
    EXPECT_LT(max_abs_diff(h, full.mtp_hidden[k - 1]), 1e-10) << "depth " << k;
    EXPECT_LT(max_abs_diff(mtp_logits(*model, k, h), full.mtp_logits[k - 1]), 1e-10) << "depth " << k;
    previous = h;
  }
}

TEST(CachedForward, EveryMtpDepthMatchesTheTrainingForwardsMtpLogits) {
  for (const auto& split : std::vector<std::vector<int64_t>>{{11}, {3, 1, 1, 2, 1, 4}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}}) {
    check_mtp_depths(tiny_config(), split);
    check_mtp_depths(testing::parallel_config(), split);
  }
}

TEST(CachedForward, AppendMaskIsCausalAmongNewTokens) {
  auto mask = append_causal_mask(3, 2, torch::TensorOptions().dtype(torch::kDouble));
  ASSERT_EQ(mask.sizes(), torch::IntArrayRef({3, 5}));
  for (int64_t j = 0; j < 3; ++j) {
    for (int64_t s = 0; s < 5; ++s) {
      EXPECT_EQ(std::isinf(mask[j][s].item<double>()), s > 2 + j) << j << "," << s;
    }
  }
}

TEST(Mla, AbsorbedEqualsNaiveOnRandomInputs) {
  for (ModelConfig config : {tiny_config(), testing::parallel_config()}) {  // with and without q_lora
    if (config.mtp_kind == MtpKind::kParallel) config.q_lora_rank.reset();
    config.num_attention_heads = config.num_key_value_heads = 3;
    torch::manual_seed(25);
    MlaAttention attention(config);
    attention->to(torch::kDouble);
    for (auto& p : attention->parameters()) {
      if (p.dim() > 1) torch::nn::init::normal_(p, 0.0, 0.5);
    }
    for (int64_t batch : {1, 2}) {
      const int64_t queries = 4, keys = 9, heads = config.num_attention_heads;
      MlaProjections q{torch::randn({batch, queries, heads, config.qk_nope_head_dim}, torch::kDouble),
                       torch::randn({batch, queries, heads, config.qk_rope_head_dim}, torch::kDouble), {}, {}};
      auto c_kv = torch::randn({batch, keys, config.kv_lora_rank}, torch::kDouble);
      auto k_pe = torch::randn({batch, keys, config.qk_rope_head_dim}, torch::kDouble);
      auto mask = append_causal_mask(queries, keys - queries, torch::TensorOptions().dtype(torch::kDouble));
      for (const auto& m : {mask, torch::Tensor()}) {
        auto naive = attention->attend_naive(q, c_kv, k_pe, m);
        auto absorbed = attention->attend_absorbed(q, c_kv, k_pe, m);
        ASSERT_EQ(naive.sizes(), absorbed.sizes());
        EXPECT_LT(max_abs_diff(naive, absorbed), 1e-12);
        EXPECT_GT(naive.abs().max().item<double>(), 1e-3);  // not trivially zero
      }
    }
  }
}

TEST(Mla, AbsorbedInFloatStaysClose) {
  ModelConfig config = tiny_config();
  torch::manual_seed(26);
  MlaAttention attention(config);
  for (auto& p : attention->parameters()) {
    if (p.dim() > 1) torch::nn::init::normal_(p, 0.0, 0.3);
  }
  MlaProjections q{torch::randn({1, 1, 2, config.qk_nope_head_dim}), torch::randn({1, 1, 2, config.qk_rope_head_dim}),
                   {}, {}};
  auto c_kv = torch::randn({1, 30, config.kv_lora_rank});
  auto k_pe = torch::randn({1, 30, config.qk_rope_head_dim});
  EXPECT_LT(max_abs_diff(attention->attend_naive(q, c_kv, k_pe, {}), attention->attend_absorbed(q, c_kv, k_pe, {})), 1e-4);
}

}  // namespace
}  // namespace nextn::inference
