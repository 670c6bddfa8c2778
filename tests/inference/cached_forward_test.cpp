// The cached (incremental) forward against the training forward: the same logits at every
// position for the main model and every MTP depth, whatever the split of the sequence into
// appends, in both MLA forms; the absorbed form against the naive one on random inputs.
#include <gtest/gtest.h>

#include "inference_test_support.h"
#include "nextn/inference/cached_forward.h"
#include "nextn/inference/kv_cache.h"
#include "nextn/kernels/few_rows_matmul.h"
#include "nextn/util/error.h"

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

// In float32, appends of up to kFewRowsMaxRows rows run decoding's kernels (RMSNorm, routing, MLA
// attention, few-rows products) while the full forward runs libtorch's operators.
TEST(CachedForward, Float32DecodingKernelsMatchTheFullForward) {
  for (ModelConfig config : {tiny_config(), testing::parallel_config()}) {
    DeepSeekV3 model = random_model(config, 29, 0.3, torch::kFloat);
    auto ids = torch::randint(config.vocab_size, {1, 12}, torch::kLong);
    auto full = model->forward(ids, ForwardOptions{true, false});
    for (const auto& split : std::vector<std::vector<int64_t>>{{5, 1, 1, 1, 1, 1, 1, 1}, {1, 2, 4, 3, 2}}) {
      auto cached = run_in_chunks(model, ids, split, AttentionForm::kAuto);
      EXPECT_LT(max_abs_diff(cached.logits, full.logits), 1e-4);
      EXPECT_LT(max_abs_diff(cached.hidden, full.hidden), 1e-4);
    }
    // The first MTP depth over the same positions, token by token.
    KvCache cache = KvCache::for_mtp_module(config, 1, 11, options_of(model));
    std::vector<torch::Tensor> outputs;
    for (int64_t i = 0; i < 11; ++i) {
      torch::Tensor token;
      if (config.mtp_kind == MtpKind::kSequential) token = ids.narrow(1, i + 1, 1);
      outputs.push_back(run_mtp_module_cached(*model, 1, full.hidden.narrow(1, i, 1), token, cache));
    }
    EXPECT_LT(max_abs_diff(mtp_logits(*model, 1, torch::cat(outputs, 1)), full.mtp_logits[0]), 1e-4);
  }
}

// What greedy speculative decoding's exactness rests on in float32: a verify's rows (an append of
// 2-4 tokens) are bit for bit what plain decoding computes one token at a time, so no near tie of
// two logits can make the verify pick another token than plain decoding would.
TEST(CachedForward, Float32AppendOfSeveralTokensGivesEachRowWhatDecodingItAloneGives) {
  for (ModelConfig config : {tiny_config(), testing::parallel_config()}) {
    DeepSeekV3 model = random_model(config, 32, 0.3, torch::kFloat);
    for (int trial = 0; trial < 4; ++trial) {
      auto ids = torch::randint(config.vocab_size, {1, 9}, torch::kLong);
      auto together = run_in_chunks(model, ids, {5, 4}, AttentionForm::kAuto);
      auto alone = run_in_chunks(model, ids, {5, 1, 1, 1, 1}, AttentionForm::kAuto);
      EXPECT_TRUE(torch::equal(together.logits, alone.logits)) << max_abs_diff(together.logits, alone.logits);
      EXPECT_TRUE(torch::equal(together.hidden, alone.hidden)) << max_abs_diff(together.hidden, alone.hidden);
    }
  }
}

// A prompt of up to kernels::kFewRowsMax tokens is prefilled on decoding's kernels: each of its
// rows bit for bit what feeding the prompt one token at a time computes (libtorch's naive form and
// BLAS, which longer prompts take, give other last bits).
TEST(CachedForward, Float32ShortPromptPrefillGivesEachRowWhatDecodingItTokenByTokenGives) {
  for (ModelConfig config : {tiny_config(), testing::parallel_config()}) {
    DeepSeekV3 model = random_model(config, 33, 0.3, torch::kFloat);
    for (int64_t length : {int64_t{2}, int64_t{5}, kernels::kFewRowsMax}) {
      auto ids = torch::randint(config.vocab_size, {1, length}, torch::kLong);
      auto prefill = run_in_chunks(model, ids, {length}, AttentionForm::kAuto);
      auto token_by_token = run_in_chunks(model, ids, std::vector<int64_t>(length, 1), AttentionForm::kAuto);
      EXPECT_TRUE(torch::equal(prefill.logits, token_by_token.logits))
          << length << " tokens: " << max_abs_diff(prefill.logits, token_by_token.logits);
      EXPECT_TRUE(torch::equal(prefill.hidden, token_by_token.hidden)) << length << " tokens";
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

// kLastToken (the deepest draft depth's catch-up): the last position's output of a full append,
// with every position in the cache as a full append leaves it, in double and in float32 (whose few
// rows take the decoding kernels: a row alone is bit for bit the row among others).
void check_last_token_output(const ModelConfig& config, torch::ScalarType dtype) {
  DeepSeekV3 model = random_model(config, 31, 0.3, dtype);
  torch::NoGradGuard no_grad;
  const int64_t length = 9;
  auto ids = torch::randint(config.vocab_size, {1, length + 1}, torch::kLong);
  KvCache main_cache = KvCache::for_main_model(config, 1, length, options_of(model));
  const torch::Tensor h0 = run_main_model_cached(*model, ids.narrow(1, 0, length), main_cache).hidden;
  KvCache every = KvCache::for_mtp_module(config, 1, length, options_of(model));
  KvCache last = KvCache::for_mtp_module(config, 1, length, options_of(model));
  int64_t start = 0;
  for (int64_t size : {5, 1, 2, 1}) {  // a prompt's catch-up, then decoding's 1-2 positions
    torch::Tensor tokens;
    if (config.mtp_kind == MtpKind::kSequential) tokens = ids.narrow(1, start + 1, size);
    auto input = h0.narrow(1, start, size);
    auto all = run_mtp_module_cached(*model, 1, input, tokens, every);
    auto one = run_mtp_module_cached(*model, 1, input, tokens, last, AttentionForm::kAuto, CachedOutput::kLastToken);
    ASSERT_EQ(one.sizes(), torch::IntArrayRef({1, 1, config.hidden_size}));
    auto expected = all.narrow(1, size - 1, 1);
    if (dtype == torch::kFloat && size <= 4) {
      EXPECT_TRUE(torch::equal(one, expected)) << "append of " << size << ": " << max_abs_diff(one, expected);
    } else {
      EXPECT_LT(max_abs_diff(one, expected), dtype == torch::kFloat ? 1e-5 : 1e-12) << "append of " << size;
    }
    start += size;
    ASSERT_EQ(last.length(), every.length());
    EXPECT_TRUE(torch::equal(last.c_kv(0), every.c_kv(0)));
    EXPECT_TRUE(torch::equal(last.k_pe(0), every.k_pe(0)));
  }
}

TEST(CachedForward, LastTokenOutputIsTheFullAppendsLastRowWithTheSameCache) {
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    check_last_token_output(tiny_config(), dtype);
    check_last_token_output(testing::parallel_config(), dtype);
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

// An attention layer with its matrices drawn from N(0, scale) (seeded), in the given type.
MlaAttention random_attention(const ModelConfig& config, uint64_t seed, double scale,
                              torch::ScalarType dtype = torch::kFloat) {
  torch::manual_seed(seed);
  MlaAttention attention(config);
  attention->to(dtype);
  for (auto& p : attention->parameters()) {
    if (p.dim() > 1) torch::nn::init::normal_(p, 0.0, scale);
  }
  return attention;
}

TEST(Mla, AbsorbedEqualsNaiveOnRandomInputs) {
  for (ModelConfig config : {tiny_config(), testing::parallel_config()}) {  // with and without q_lora
    if (config.mtp_kind == MtpKind::kParallel) config.q_lora_rank.reset();
    config.num_attention_heads = config.num_key_value_heads = 3;
    MlaAttention attention = random_attention(config, 25, 0.5, torch::kDouble);
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
  MlaAttention attention = random_attention(config, 26, 0.3);
  MlaProjections q{torch::randn({1, 1, 2, config.qk_nope_head_dim}), torch::randn({1, 1, 2, config.qk_rope_head_dim}),
                   {}, {}};
  auto c_kv = torch::randn({1, 30, config.kv_lora_rank});
  auto k_pe = torch::randn({1, 30, config.qk_rope_head_dim});
  EXPECT_LT(max_abs_diff(attention->attend_naive(q, c_kv, k_pe, {}), attention->attend_absorbed(q, c_kv, k_pe, {})), 1e-4);
}

// Decoding's few float32 rows take the kernels (kernels/latent_attention.h, row_ops.h); the
// naive form in libtorch operators is the reference: the same outputs and the same cache entries.
TEST(Mla, FewRowsKernelsEqualTheNaiveFormAndWriteTheSameCache) {
  for (ModelConfig config : {tiny_config(), testing::parallel_config()}) {  // with and without q_lora
    if (config.mtp_kind == MtpKind::kParallel) config.q_lora_rank.reset();
    config.num_attention_heads = config.num_key_value_heads = 3;
    MlaAttention attention = random_attention(config, 27, 0.3);
    RotaryEmbedding rotary(config);
    const int64_t cached = 7, capacity = 16;
    for (int64_t batch : {1, 2}) {
      for (int64_t new_tokens = 1; batch * new_tokens <= kFewRowsMaxRows; ++new_tokens) {
        // Angles shared by the batch ([1, T, ...]) and per batch row ([B, T, ...], other positions).
        const int64_t angle_kinds = batch == 2 ? 2 : 1;
        for (int64_t kind = 0; kind < angle_kinds; ++kind) {
          auto positions = torch::arange(cached, cached + new_tokens).repeat({2, 1});
          positions[1] += 5;
          const RopeAngles angles =
              kind == 0 ? rope_angles_for_span(*rotary, cached, new_tokens) : rotary->angles(positions);
          LatentKvSlot fast{torch::randn({batch, capacity, config.kv_lora_rank}),
                            torch::randn({batch, capacity, config.qk_rope_head_dim}), cached, torch::Tensor()};
          LatentKvSlot reference{fast.c_kv.clone(), fast.k_pe.clone(), cached, torch::Tensor()};
          auto x = torch::randn({batch, new_tokens, config.hidden_size});
          torch::NoGradGuard no_grad;
          ASSERT_TRUE(attention->takes_few_rows_kernels(x, angles, fast));
          auto out = attention->forward_cached(x, angles, fast, MlaForm::kAbsorbed);
          auto expected = attention->forward_cached(x, angles, reference, MlaForm::kNaive);
          ASSERT_EQ(out.sizes(), expected.sizes());
          const std::string where = "batch " + std::to_string(batch) + " new tokens " + std::to_string(new_tokens) +
                                    " angles [" + std::to_string(angles.cos.size(0)) + ", ...]";
          EXPECT_LT(max_abs_diff(out, expected), 1e-5) << where;
          EXPECT_GT(expected.abs().max().item<double>(), 1e-2);
          // Cache entries to a few float roundings of their size (the kernels contract to FMAs).
          EXPECT_LT(max_abs_diff(fast.c_kv, reference.c_kv), 1e-5 * (1 + reference.c_kv.abs().max().item<double>()));
          EXPECT_LT(max_abs_diff(fast.k_pe, reference.k_pe), 1e-5 * (1 + reference.k_pe.abs().max().item<double>()))
              << where;
        }
      }
    }
  }
}

TEST(Mla, InputsTheKernelsCannotPlaceTakeTheCheckedPath) {
  ModelConfig config = tiny_config();
  MlaAttention attention(config);
  RotaryEmbedding rotary(config);
  torch::NoGradGuard no_grad;
  auto x = torch::randn({2, 1, config.hidden_size});
  auto angles = rope_angles_for_span(*rotary, 3, 1);
  LatentKvSlot one_row{torch::zeros({1, 8, config.kv_lora_rank}), torch::zeros({1, 8, config.qk_rope_head_dim}), 3, torch::Tensor()};
  EXPECT_FALSE(attention->takes_few_rows_kernels(x, angles, one_row));  // a cache for 1 row, 2 given
  EXPECT_ANY_THROW(attention->forward_cached(x, angles, one_row, MlaForm::kAbsorbed));
  LatentKvSlot fits{torch::zeros({2, 8, config.kv_lora_rank}), torch::zeros({2, 8, config.qk_rope_head_dim}), 3, torch::Tensor()};
  EXPECT_TRUE(attention->takes_few_rows_kernels(x, angles, fits));
  EXPECT_FALSE(attention->takes_few_rows_kernels(x, rope_angles_for_span(*rotary, 3, 2), fits));  // angles for 2
  LatentKvSlot full{fits.c_kv, fits.k_pe, 8, torch::Tensor()};
  EXPECT_FALSE(attention->takes_few_rows_kernels(x, angles, full));  // no room
  torch::GradMode::set_enabled(true);
  EXPECT_FALSE(attention->takes_few_rows_kernels(x, angles, fits));  // autograd
  torch::GradMode::set_enabled(false);
}

TEST(CachedForward, MtpModuleChecksTheBatchOfItsInputs) {
  ModelConfig config = tiny_config();
  DeepSeekV3 model = random_model(config, 30, 0.3, torch::kFloat);
  KvCache cache = KvCache::for_mtp_module(config, 1, 8, options_of(model));
  auto hidden = torch::randn({2, 1, config.hidden_size});
  EXPECT_THROW(run_mtp_module_cached(*model, 1, hidden, torch::zeros({2, 1}, torch::kLong), cache), Error);
}

// Row t of a multi-token append is bit-identical to appending the same tokens one at a time: a
// speculative verify's rows are what plain decoding computes.
TEST(Mla, FewRowsKernelsGiveEachRowWhatAppendingItAloneGives) {
  ModelConfig config = tiny_config();
  MlaAttention attention = random_attention(config, 28, 0.3);
  RotaryEmbedding rotary(config);
  torch::NoGradGuard no_grad;
  const int64_t cached = 5, new_tokens = 3;
  LatentKvSlot together{torch::randn({1, 12, config.kv_lora_rank}), torch::randn({1, 12, config.qk_rope_head_dim}),
                        cached, torch::Tensor()};
  LatentKvSlot one_by_one{together.c_kv.clone(), together.k_pe.clone(), cached, torch::Tensor()};
  auto x = torch::randn({1, new_tokens, config.hidden_size});
  auto all = attention->forward_cached(x, rope_angles_for_span(*rotary, cached, new_tokens), together,
                                       MlaForm::kAbsorbed);
  for (int64_t t = 0; t < new_tokens; ++t) {
    auto row = attention->forward_cached(x.narrow(1, t, 1), rope_angles_for_span(*rotary, cached + t, 1), one_by_one,
                                         MlaForm::kAbsorbed);
    one_by_one.length += 1;
    EXPECT_TRUE(torch::equal(row, all.narrow(1, t, 1))) << "row " << t;
  }
  EXPECT_TRUE(torch::equal(together.c_kv, one_by_one.c_kv));
}

}  // namespace
}  // namespace nextn::inference
