// Several sequences decoded in one step, each with its own cache (continuous batching): every row
// must be bit for bit what decoding its sequence alone gives, whatever the batch's size (beyond
// the kernels' 4 rows too) and order; and the reference path (other dtypes) must agree with the
// single-sequence forward.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>

#include "inference_test_support.h"
#include "nextn/inference/batched_forward.h"
#include "nextn/inference/cached_forward.h"
#include "nextn/inference/decoding_panels.h"
#include "nextn/inference/plain_decoder.h"
#include "nextn/kernels/panel_matmul.h"
#include "nextn/model/linear.h"
#include "nextn/util/error.h"

namespace nextn::inference {
namespace {

using testing::random_model;
using testing::random_prompt;

struct Sequence {
  KvCache cache;
  std::vector<int64_t> tokens;  // prompt + generated
};

KvCache new_cache(DeepSeekV3Impl& model, int64_t capacity) {
  const auto& w = model.embed_tokens->weight;
  return KvCache::for_main_model(model.config(), 1, capacity, torch::TensorOptions().dtype(w.scalar_type()));
}

// Prompts of different lengths, prefilled one by one; greedy first tokens appended.
std::vector<Sequence> prefilled(DeepSeekV3Impl& model, int64_t count, uint64_t seed) {
  std::vector<Sequence> sequences;
  for (int64_t s = 0; s < count; ++s) {
    Sequence seq{new_cache(model, 64), random_prompt(3 + (s * 5) % 11, model.config().vocab_size, seed + s)};
    auto out = run_main_model_cached(model, ids_tensor(seq.tokens, torch::kCPU), seq.cache, LogitsFor::kLastPosition);
    seq.tokens.push_back(greedy_tokens(out.logits[0][0])[0]);
    sequences.push_back(std::move(seq));
  }
  return sequences;
}

TEST(BatchedForward, EveryRowIsBitForBitItsSequenceAlone) {
  ModelConfig config = testing::tiny_config();
  DeepSeekV3 model = random_model(config, 21, 0.3, torch::kFloat);
  // With the model's own weights (the row kernel) and with decoding's panels (generate, serve), in
  // float32 and in bfloat16.
  for (const std::string weights : {"rows", "panels fp32", "panels bf16"}) {
  std::optional<DecodingPanels> packed;
  if (weights == "panels fp32") packed.emplace(model, DecodingPrecision::kFloat32);
  if (weights == "panels bf16" && kernels::panel_matmul_vectorised()) packed.emplace(model, DecodingPrecision::kBfloat16);
  for (int64_t count : {1, 3, 4, 5, 9}) {
    SCOPED_TRACE(weights + ", sequences " + std::to_string(count));
    auto alone = prefilled(*model, count, 100);
    auto together = prefilled(*model, count, 100);
    for (int step = 0; step < 6; ++step) {
      std::vector<BatchedSequence> batch;
      for (auto& s : together) batch.push_back({&s.cache, {s.tokens.back()}});
      BatchedStep b = run_main_model_batched(*model, batch);
      ASSERT_EQ(b.logits.size(0), count);
      for (int64_t s = 0; s < count; ++s) {
        auto single = run_main_model_cached(*model, ids_tensor({alone[s].tokens.back()}, torch::kCPU), alone[s].cache);
        ASSERT_TRUE(torch::equal(b.logits[b.first_row[s]], single.logits[0][0])) << "sequence " << s << " step " << step;
        ASSERT_TRUE(torch::equal(b.hidden[b.first_row[s]], single.hidden[0][0])) << "sequence " << s;
        const int64_t next = greedy_tokens(single.logits[0][0])[0];
        alone[s].tokens.push_back(next);
        together[s].tokens.push_back(next);
      }
    }
    for (int64_t s = 0; s < count; ++s) {
      ASSERT_EQ(alone[s].cache.length(), together[s].cache.length());
      for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
        EXPECT_TRUE(torch::equal(alone[s].cache.c_kv(l), together[s].cache.c_kv(l)));
        EXPECT_TRUE(torch::equal(alone[s].cache.k_pe(l), together[s].cache.k_pe(l)));
      }
    }
  }
  }
}

// Decoding on the panels computes the same logits as on the model's rows, to float rounding (the
// two kernels sum each output in a different order), and the panels take the products: the
// logits are not the rows' bits.
// Without a vector path the panels would be the reference's scalar chain, slower than the row
// kernel's portable path: nothing is packed, decoding reads the rows.
TEST(BatchedForward, PanelsArePackedOnlyWhereTheyHaveAVectorPath) {
  DeepSeekV3 model = random_model(testing::tiny_config(), 24, 0.3, torch::kFloat);
  const kernels::FewRowsPath before = kernels::few_rows_matmul_path();
  kernels::force_few_rows_matmul_path(kernels::FewRowsPath::kPortable);
  EXPECT_FALSE(kernels::panel_matmul_vectorised());
  {
    const DecodingPanels packed(model);
    EXPECT_EQ(packed.matrices(), 0);
    EXPECT_EQ(kernels::registered_panel_count(), 0);
  }
  kernels::force_few_rows_matmul_path(before);
  for (kernels::FewRowsPath path : {kernels::FewRowsPath::kAvx2Fma, kernels::FewRowsPath::kAvx512}) {
    if (!kernels::few_rows_matmul_path_available(path)) continue;
    kernels::force_few_rows_matmul_path(path);
    EXPECT_TRUE(kernels::panel_matmul_vectorised()) << kernels::few_rows_matmul_path_name(path);
    EXPECT_GT(DecodingPanels(model).matrices(), 0);
  }
  kernels::force_few_rows_matmul_path(before);
}

TEST(BatchedForward, PanelsGiveTheRowKernelsLogitsToRounding) {
  if (!kernels::panel_matmul_vectorised()) GTEST_SKIP() << "no vector path for panels here: nothing is packed";
  ModelConfig config = testing::tiny_config();
  DeepSeekV3 model = random_model(config, 23, 0.3, torch::kFloat);
  // The same tokens decoded twice, teacher-forced: first on the rows, then on the panels.
  auto decode = [&](std::vector<Sequence> sequences) {
    std::vector<torch::Tensor> logits;
    for (int step = 0; step < 4; ++step) {
      for (auto& seq : sequences) {
        auto out = run_main_model_cached(*model, ids_tensor({seq.tokens.back()}, torch::kCPU), seq.cache);
        logits.push_back(out.logits[0][0].clone());
        seq.tokens.push_back((seq.tokens.back() * 7 + step) % config.vocab_size);
      }
    }
    return logits;
  };
  const auto on_rows = decode(prefilled(*model, 3, 300));
  std::vector<torch::Tensor> on_panels;
  {
    const DecodingPanels packed(model);
    EXPECT_GT(packed.matrices(), config.num_hidden_layers * 4);
    EXPECT_GT(packed.bytes(), 0);
    on_panels = decode(prefilled(*model, 3, 300));
  }
  bool any_bit_differs = false;
  for (size_t i = 0; i < on_rows.size(); ++i) {
    EXPECT_LT(testing::max_abs_diff(on_panels[i], on_rows[i]), 1e-4 * (1 + on_rows[i].abs().max().item<double>())) << i;
    any_bit_differs = any_bit_differs || !torch::equal(on_panels[i], on_rows[i]);
  }
  EXPECT_TRUE(any_bit_differs) << "the panels were not used";
  // Gone with the object: the rows' bits again.
  const auto after = decode(prefilled(*model, 3, 300));
  for (size_t i = 0; i < on_rows.size(); ++i) EXPECT_TRUE(torch::equal(after[i], on_rows[i])) << i;
}

// The same tokens decoded teacher-forced, three prompts, four steps each: every step's logits.
std::vector<torch::Tensor> teacher_forced_logits(DeepSeekV3Impl& model, uint64_t seed) {
  std::vector<Sequence> sequences = prefilled(model, 3, seed);
  std::vector<torch::Tensor> logits;
  for (int step = 0; step < 4; ++step) {
    for (auto& seq : sequences) {
      auto out = run_main_model_cached(model, ids_tensor({seq.tokens.back()}, torch::kCPU), seq.cache);
      logits.push_back(out.logits[0][0].clone());
      seq.tokens.push_back((seq.tokens.back() * 7 + step) % model.config().vocab_size);
    }
  }
  return logits;
}

// --precision: auto packs bfloat16 copies exactly where the weights are bfloat16 values (a
// bfloat16 checkpoint), and changes no bit of decoding; bf16 computes every product but the
// routers' gates in bfloat16, its logits the fp32 copies' to that rounding.
TEST(BatchedForward, DecodingPrecisionAutoIsExactAndBf16RoundsAllButTheGates) {
  if (!kernels::panel_matmul_vectorised()) GTEST_SKIP() << "no vector path for panels here: nothing is packed";
  ModelConfig config = testing::tiny_config();
  DeepSeekV3 model = random_model(config, 25, 0.3, torch::kFloat);
  const int64_t gates = static_cast<int64_t>(model->moe_layers().size());
  ASSERT_GT(gates, 0);
  std::vector<torch::Tensor> fp32_logits, bf16_logits;
  int64_t fp32_bytes = 0;
  {
    const DecodingPanels fp32(model, DecodingPrecision::kFloat32);
    EXPECT_EQ(fp32.matrices_of(kernels::PanelType::kFloat32), fp32.matrices());
    fp32_bytes = fp32.bytes();
    fp32_logits = teacher_forced_logits(*model, 500);
  }
  {
    const DecodingPanels automatic(model, DecodingPrecision::kAuto);  // float32 values: nothing in bf16
    EXPECT_EQ(automatic.matrices_of(kernels::PanelType::kFloat32), automatic.matrices());
    EXPECT_EQ(automatic.bytes(), fp32_bytes);
  }
  {
    const DecodingPanels bf16(model, DecodingPrecision::kBfloat16);
    EXPECT_EQ(bf16.matrices_of(kernels::PanelType::kBfloat16Dot), bf16.matrices() - gates);
    EXPECT_EQ(bf16.matrices_of(kernels::PanelType::kFloat32), gates);
    EXPECT_LT(bf16.bytes(), fp32_bytes * 0.55);
    EXPECT_NE(bf16.describe().find("bf16 products, " + std::to_string(gates) + " fp32"), std::string::npos)
        << bf16.describe();
    bf16_logits = teacher_forced_logits(*model, 500);
  }
  bool any_bit_differs = false;
  for (size_t i = 0; i < fp32_logits.size(); ++i) any_bit_differs = any_bit_differs || !torch::equal(bf16_logits[i], fp32_logits[i]);
  EXPECT_TRUE(any_bit_differs) << "the bf16 copies were not used";
  // The logits to bfloat16's rounding: on a model without routers (this random MoE model's
  // rounding can change an expert, and with it a logit by a whole unit).
  {
    ModelConfig dense_config = config;
    dense_config.first_k_dense_replace = dense_config.num_hidden_layers;
    DeepSeekV3 dense = random_model(dense_config, 27, 0.3, torch::kFloat);
    ASSERT_TRUE(dense->moe_layers().size() <= static_cast<size_t>(dense_config.mtp_depth()));  // MTP modules' only
    std::vector<torch::Tensor> fp32, bf16;
    {
      const DecodingPanels packed(dense, DecodingPrecision::kFloat32);
      fp32 = teacher_forced_logits(*dense, 500);
    }
    {
      const DecodingPanels packed(dense, DecodingPrecision::kBfloat16);
      bf16 = teacher_forced_logits(*dense, 500);
    }
    for (size_t i = 0; i < fp32.size(); ++i) {
      const double scale = 1 + fp32[i].abs().max().item<double>();
      EXPECT_LT(testing::max_abs_diff(bf16[i], fp32[i]), 5e-2 * scale) << i;
      EXPECT_FALSE(torch::equal(bf16[i], fp32[i])) << i;
    }
  }

  // The model as a bfloat16 checkpoint loads: every weight a bfloat16 value.
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.copy_(p.to(torch::kBFloat16).to(torch::kFloat));
  }
  std::vector<torch::Tensor> exact_fp32;
  {
    const DecodingPanels fp32(model, DecodingPrecision::kFloat32);
    exact_fp32 = teacher_forced_logits(*model, 500);
  }
  const DecodingPanels automatic(model, DecodingPrecision::kAuto);
  EXPECT_EQ(automatic.matrices_of(kernels::PanelType::kBfloat16), automatic.matrices());
  EXPECT_LT(automatic.bytes(), fp32_bytes * 0.55);
  EXPECT_NE(automatic.describe().find(": " + std::to_string(automatic.matrices()) + " bf16 weights"), std::string::npos)
      << automatic.describe();
  const auto exact_auto = teacher_forced_logits(*model, 500);
  for (size_t i = 0; i < exact_fp32.size(); ++i) EXPECT_TRUE(torch::equal(exact_auto[i], exact_fp32[i])) << i;
}

// One model, two precisions alive at once: the second is refused whole (nothing of it stays
// registered), and the first keeps decoding as before.
TEST(BatchedForward, ASecondPrecisionForTheSameModelIsRefused) {
  if (!kernels::panel_matmul_vectorised()) GTEST_SKIP() << "no vector path for panels here: nothing is packed";
  DeepSeekV3 model = random_model(testing::tiny_config(), 28, 0.3, torch::kFloat);
  const int64_t before = kernels::registered_panel_count();
  const DecodingPanels bf16(model, DecodingPrecision::kBfloat16);
  const int64_t with_bf16 = kernels::registered_panel_count();
  EXPECT_GT(with_bf16, before);
  try {
    DecodingPanels fp32(model, DecodingPrecision::kFloat32);
    ADD_FAILURE() << "two precisions packed at once";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("decoding panels in fp32"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("one precision per model at a time"), std::string::npos) << e.what();
  }
  EXPECT_EQ(kernels::registered_panel_count(), with_bf16);
  const DecodingPanels again(model, DecodingPrecision::kBfloat16);  // the same precision: shared
  EXPECT_EQ(kernels::registered_panel_count(), with_bf16);
}

TEST(BatchedForward, Bf16DecodingNeedsThePanelsVectorPath) {
  DeepSeekV3 model = random_model(testing::tiny_config(), 26, 0.3, torch::kFloat);
  const kernels::FewRowsPath before = kernels::few_rows_matmul_path();
  kernels::force_few_rows_matmul_path(kernels::FewRowsPath::kPortable);
  EXPECT_THROW(DecodingPanels(model, DecodingPrecision::kBfloat16), Error);
  EXPECT_EQ(DecodingPanels(model, DecodingPrecision::kAuto).matrices(), 0);
  kernels::force_few_rows_matmul_path(before);
  EXPECT_EQ(parse_decoding_precision("bf16"), DecodingPrecision::kBfloat16);
  EXPECT_THROW(parse_decoding_precision("fp16"), Error);
}

TEST(BatchedForward, SeveralTokensPerSequenceAndAnyOrder) {
  ModelConfig config = testing::tiny_config();
  DeepSeekV3 model = random_model(config, 22, 0.3, torch::kFloat);
  // Sequences of 1, 3, 2 and 4 new tokens (a speculative verify has N + 1), then the reverse order.
  const std::vector<int64_t> new_tokens = {1, 3, 2, 4};
  for (bool reversed : {false, true}) {
    SCOPED_TRACE(reversed ? "reversed" : "in order");
    auto alone = prefilled(*model, 4, 300);
    auto together = prefilled(*model, 4, 300);
    std::vector<int64_t> order = {0, 1, 2, 3};
    if (reversed) std::reverse(order.begin(), order.end());
    std::vector<BatchedSequence> batch;
    for (int64_t s : order) {
      auto extra = random_prompt(new_tokens[s] - 1, config.vocab_size, 400 + s);
      std::vector<int64_t> tokens = {together[s].tokens.back()};
      tokens.insert(tokens.end(), extra.begin(), extra.end());
      batch.push_back({&together[s].cache, tokens});
    }
    BatchedStep b = run_main_model_batched(*model, batch);
    for (size_t i = 0; i < order.size(); ++i) {
      const int64_t s = order[i];
      auto single = run_main_model_cached(*model, ids_tensor(batch[i].tokens, torch::kCPU), alone[s].cache);
      for (int64_t t = 0; t < new_tokens[s]; ++t) {
        EXPECT_TRUE(torch::equal(b.logits[b.first_row[i] + t], single.logits[0][t])) << "sequence " << s << " token " << t;
      }
    }
  }
}

TEST(BatchedForward, TheKernelsTakeAnyNumberOfRowsOnlyInsideTheScope) {
  auto x = torch::randn({9, 8});
  auto w = torch::randn({5, 8});
  torch::NoGradGuard no_grad;
  EXPECT_FALSE(takes_few_rows_kernels(x, w, 8));
  auto reference = torch::mm(x.to(torch::kDouble), w.to(torch::kDouble).t());
  {
    ScopedBatchedDecoding batched;
    EXPECT_TRUE(takes_few_rows_kernels(x, w, 8));
    auto y = linear_no_bias(x, w);  // three kernel calls: 4 + 4 + 1 rows
    EXPECT_LT(testing::max_abs_diff(y, reference), 1e-4);
    for (int64_t r = 0; r < 9; ++r) EXPECT_TRUE(torch::equal(y[r], linear_no_bias(x.narrow(0, r, 1), w)[0]));
  }
  EXPECT_FALSE(takes_few_rows_kernels(x, w, 8));
}

TEST(BatchedForward, DoubleModelsTakeTheReferencePath) {
  // No kernels for float64: each sequence runs through forward_cached on its own, and the batch
  // must still give every sequence's logits (to float64 rounding).
  ModelConfig config = testing::tiny_config();
  DeepSeekV3 model = random_model(config, 23);
  auto alone = prefilled(*model, 3, 500);
  auto together = prefilled(*model, 3, 500);
  std::vector<BatchedSequence> batch;
  for (auto& s : together) batch.push_back({&s.cache, {s.tokens.back()}});
  BatchedStep b = run_main_model_batched(*model, batch);
  for (int64_t s = 0; s < 3; ++s) {
    auto single = run_main_model_cached(*model, ids_tensor({alone[s].tokens.back()}, torch::kCPU), alone[s].cache);
    EXPECT_LT(testing::max_abs_diff(b.logits[b.first_row[s]], single.logits[0][0]), 1e-12);
  }
}

TEST(BatchedForward, BadInputIsRefused) {
  ModelConfig config = testing::tiny_config();
  DeepSeekV3 model = random_model(config, 24, 0.3, torch::kFloat);
  auto seqs = prefilled(*model, 2, 600);
  auto expect_error = [&](const std::vector<BatchedSequence>& batch, const std::string& fragment) {
    try {
      run_main_model_batched(*model, batch);
      ADD_FAILURE() << "expected an error with '" << fragment << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_error({}, "at least one sequence");
  expect_error({{&seqs[0].cache, {}}}, "at least one new token");
  expect_error({{&seqs[0].cache, {config.vocab_size}}}, "outside the vocabulary");
  KvCache full = new_cache(*model, 4);
  full.advance(4);
  expect_error({{&full, {1}}}, "KV cache overflow");
  EXPECT_EQ(seqs[0].cache.length(), static_cast<int64_t>(seqs[0].tokens.size()) - 1);  // nothing was appended
}

}  // namespace
}  // namespace nextn::inference
