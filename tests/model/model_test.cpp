// The whole model: parameter layout, causality of the main model and every MTP depth, RoPE and
// MLA against direct computations.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>

#include "nextn/model/deepseek_v3.h"
#include "nextn/model/mla_attention.h"
#include "nextn/model/mtp_module.h"
#include "nextn/model/rotary_embedding.h"
#include "test_support.h"

namespace nextn {
namespace {

using testing::max_abs_diff;
using testing::tiny_config;

ModelConfig parallel_no_qlora_config() {
  ModelConfig c = tiny_config();
  c.mtp_kind = MtpKind::kParallel;
  c.q_lora_rank.reset();
  c.num_nextn_predict_layers = 3;
  return c;
}

TEST(Model, ParameterCountMatchesTheConfigFormula) {
  for (ModelConfig c : {tiny_config(), parallel_no_qlora_config()}) {
    DeepSeekV3 model(c);
    int64_t total = 0;
    for (const auto& p : model->parameters()) total += p.numel();
    EXPECT_EQ(total, count_parameters(c).total) << to_string(c.mtp_kind);
  }
  ModelConfig tied = tiny_config();
  tied.tie_word_embeddings = true;
  DeepSeekV3 model(tied);
  int64_t total = 0;
  for (const auto& p : model->parameters()) total += p.numel();
  EXPECT_EQ(total, count_parameters(tied).total);
}

TEST(Model, SameSeedSameWeightsAndOutputs) {
  ModelConfig c = tiny_config();
  torch::manual_seed(11);
  DeepSeekV3 a(c);
  torch::manual_seed(11);
  DeepSeekV3 b(c);
  auto ids = torch::randint(c.vocab_size, {2, 9}, torch::kLong);
  auto out_a = a(ids), out_b = b(ids);
  EXPECT_TRUE(torch::equal(out_a.logits, out_b.logits));
  EXPECT_TRUE(torch::equal(out_a.mtp_logits[1], out_b.mtp_logits[1]));
}

TEST(Model, OutputShapesPerDepth) {
  ModelConfig c = tiny_config();
  DeepSeekV3 model(c);
  auto out = model(torch::randint(c.vocab_size, {2, 10}, torch::kLong));
  EXPECT_EQ(out.logits.sizes(), torch::IntArrayRef({2, 10, c.vocab_size}));
  ASSERT_EQ(out.mtp_logits.size(), 2u);
  EXPECT_EQ(out.mtp_logits[0].sizes(), torch::IntArrayRef({2, 9, c.vocab_size}));
  EXPECT_EQ(out.mtp_logits[1].sizes(), torch::IntArrayRef({2, 8, c.vocab_size}));
  // Two MoE layers in the main model (layers 1, 2) and one in each MTP module.
  EXPECT_EQ(out.moe_stats.size(), 4u);
  auto main_only = model(torch::randint(c.vocab_size, {2, 10}, torch::kLong), ForwardOptions{false, true});
  EXPECT_TRUE(main_only.mtp_logits.empty());
  EXPECT_EQ(main_only.moe_stats.size(), 2u);
}

// Changing token j must leave main logits at positions < j and depth-k logits at positions
// < j - k untouched. It must reach the main logits at j, and the depth-k logits at the first
// position that can see it: j - k for sequential modules (position i embeds t_{i+k}), j for
// parallel heads (they read only the trunk's h_i).
void check_causality(const ModelConfig& c) {
  torch::manual_seed(12);
  DeepSeekV3 model(c);
  model->to(torch::kDouble);
  const int64_t length = 14;
  auto ids = torch::randint(c.vocab_size, {1, length}, torch::kLong);
  auto base = model(ids);
  for (int64_t j : {3, 7, 12}) {
    auto changed_ids = ids.clone();
    changed_ids[0][j] = (ids[0][j].item<int64_t>() + 1 + j) % c.vocab_size;
    auto changed = model(changed_ids);
    EXPECT_LT(max_abs_diff(base.logits.narrow(1, 0, j), changed.logits.narrow(1, 0, j)), 1e-12) << "j=" << j;
    EXPECT_GT(max_abs_diff(base.logits.narrow(1, j, 1), changed.logits.narrow(1, j, 1)), 1e-6) << "j=" << j;
    for (int64_t k = 1; k <= c.mtp_depth(); ++k) {
      const auto& before = base.mtp_logits[k - 1];
      const auto& after = changed.mtp_logits[k - 1];
      const int64_t first_affected = c.mtp_kind == MtpKind::kSequential ? j - k : j;
      const int64_t unaffected = std::min<int64_t>(std::max<int64_t>(first_affected, 0), before.size(1));
      ASSERT_GE(unaffected, std::max<int64_t>(j - k, 0));  // the bound
      if (unaffected > 0) {
        EXPECT_LT(max_abs_diff(before.narrow(1, 0, unaffected), after.narrow(1, 0, unaffected)), 1e-12)
            << "depth " << k << " j=" << j;
      }
      if (first_affected >= 0 && first_affected < before.size(1)) {
        EXPECT_GT(max_abs_diff(before.narrow(1, first_affected, 1), after.narrow(1, first_affected, 1)), 1e-6)
            << "depth " << k << " j=" << j << ": token j must reach position " << first_affected;
      }
    }
  }
}

TEST(Model, CausalitySequentialMtp) { check_causality(tiny_config()); }
TEST(Model, CausalityParallelMtp) { check_causality(parallel_no_qlora_config()); }

TEST(Mtp, EhProjTakesTheEmbeddingFirstAsInTheReleasedWeights) {
  // eh_proj input is [enorm(Emb(t_{i+k})) ; hnorm(h^{k-1})]: with the second half of its columns
  // zeroed, the module's output must not depend on the previous hidden state at all.
  ModelConfig c = tiny_config();
  torch::manual_seed(14);
  MtpModule module(c, 1);
  module->to(torch::kDouble);
  for (auto& p : module->parameters()) {
    if (p.dim() > 1) torch::nn::init::normal_(p, 0.0, 0.3);
  }
  {
    torch::NoGradGuard no_grad;
    module->eh_proj->weight.narrow(1, c.hidden_size, c.hidden_size).zero_();
  }
  RotaryEmbedding rope(c);
  auto embeddings = torch::randn({1, 5, c.hidden_size}, torch::kDouble);
  auto h1 = torch::randn({1, 5, c.hidden_size}, torch::kDouble);
  auto h2 = torch::randn({1, 5, c.hidden_size}, torch::kDouble);
  auto angles = rope->angles(5);
  EXPECT_LT(max_abs_diff(module(h1, embeddings, angles), module(h2, embeddings, angles)), 1e-12);
  auto other_embeddings = torch::randn({1, 5, c.hidden_size}, torch::kDouble);
  EXPECT_GT(max_abs_diff(module(h1, embeddings, angles), module(h1, other_embeddings, angles)), 1e-6);
}

TEST(Rope, InterleavedRotationEqualsComplexMultiplication) {
  ModelConfig c = tiny_config();
  c.qk_rope_head_dim = 8;
  c.rope_scaling.reset();
  RotaryEmbedding rope(c);
  auto x = torch::randn({1, 5, 2, 8}, torch::kDouble);
  auto positions = torch::tensor({0, 3, 4, 9, 100}, torch::kLong);
  auto rotated = apply_rotary(x, rope->angles(positions));
  for (int64_t t = 0; t < 5; ++t) {
    for (int64_t h = 0; h < 2; ++h) {
      for (int64_t j = 0; j < 4; ++j) {
        double angle = positions[t].item<double>() / std::pow(c.rope_theta, 2.0 * j / 8.0);
        std::complex<double> z(x[0][t][h][2 * j].item<double>(), x[0][t][h][2 * j + 1].item<double>());
        auto r = z * std::polar(1.0, angle);
        EXPECT_NEAR(rotated[0][t][h][2 * j].item<double>(), r.real(), 1e-6);
        EXPECT_NEAR(rotated[0][t][h][2 * j + 1].item<double>(), r.imag(), 1e-6);
      }
    }
  }
}

TEST(Rope, YarnFrequenciesFollowTheRamp) {
  ModelConfig c = tiny_config();
  c.qk_rope_head_dim = 64;
  c.rope_theta = 10000;
  c.rope_scaling = RopeScaling{40.0, 4096, 32.0, 1.0, 1.0, 1.0};
  auto inv = yarn_inverse_frequencies(c);
  // Correction dims: d(r) = 64 ln(4096 / (2 pi r)) / (2 ln 10000); low = floor(d(32)), high = ceil(d(1)).
  auto d = [](double r) { return 64.0 * std::log(4096.0 / (2 * M_PI * r)) / (2 * std::log(10000.0)); };
  const double low = std::floor(d(32)), high = std::ceil(d(1));
  for (int64_t j = 0; j < 32; ++j) {
    double base = 1.0 / std::pow(10000.0, 2.0 * j / 64.0);
    double ramp = std::clamp((j - low) / (high - low), 0.0, 1.0);
    double expected = base / 40.0 * ramp + base * (1 - ramp);
    EXPECT_NEAR(inv[j].item<double>(), expected, 1e-15 + 1e-12 * expected) << "j=" << j;
  }
  EXPECT_NEAR(inv[0].item<double>(), 1.0, 1e-15);                          // fastest: kept
  EXPECT_NEAR(inv[31].item<double>(), std::pow(10000.0, -62.0 / 64) / 40, 1e-18);  // slowest: divided
}

// Attention written per head and per query position with explicit softmax loops.
torch::Tensor loop_attention(MlaAttentionImpl& attn, const torch::Tensor& x, RotaryEmbeddingImpl& rope) {
  const ModelConfig& c = attn.config();
  const int64_t length = x.size(1), heads = c.num_attention_heads;
  auto p = attn.project(x, rope.angles(length));
  auto kv = attn.kv_b_proj(p.c_kv).view({1, length, heads, c.qk_nope_head_dim + c.v_head_dim});
  auto out = torch::zeros({1, length, heads * c.v_head_dim}, x.options());
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t t = 0; t < length; ++t) {
      std::vector<double> logits;
      for (int64_t s = 0; s <= t; ++s) {
        double dot = (p.q_nope[0][t][h] * kv[0][s][h].narrow(0, 0, c.qk_nope_head_dim)).sum().item<double>() +
                     (p.q_pe[0][t][h] * p.k_pe[0][s]).sum().item<double>();
        logits.push_back(dot * c.softmax_scale());
      }
      double top = *std::max_element(logits.begin(), logits.end()), z = 0;
      for (double& l : logits) z += (l = std::exp(l - top));
      auto o = torch::zeros({c.v_head_dim}, x.options());
      for (int64_t s = 0; s <= t; ++s) o = o + logits[s] / z * kv[0][s][h].narrow(0, c.qk_nope_head_dim, c.v_head_dim);
      out[0][t].narrow(0, h * c.v_head_dim, c.v_head_dim).copy_(o);
    }
  }
  return attn.o_proj(out);
}

TEST(Mla, AttentionEqualsPerHeadLoop) {
  for (ModelConfig c : {tiny_config(), parallel_no_qlora_config()}) {
    torch::manual_seed(13);
    MlaAttention attn(c);
    RotaryEmbedding rope(c);
    attn->to(torch::kDouble);
    rope->to(torch::kDouble);
    for (auto& p : attn->named_parameters()) {
      if (p.value().dim() > 1) torch::nn::init::normal_(p.value(), 0.0, 0.4);
    }
    // The causal mask is kept between calls: it must follow the length.
    for (int64_t length : {6, 9, 6}) {
      auto x = torch::randn({1, length, c.hidden_size}, torch::kDouble);
      auto fast = attn(x, rope->angles(length));
      EXPECT_LT(max_abs_diff(fast, loop_attention(*attn, x, *rope)), 1e-12) << "length " << length;
    }
  }
}

}  // namespace
}  // namespace nextn
