// Models for the inference tests: random weights with a fixed seed, scaled up so that next-token
// distributions are far from flat (the default initializer_range of 0.02 gives near-uniform
// logits, where argmax ties and "every rule looks right" hide bugs).
#pragma once

#include <torch/torch.h>

#include <random>
#include <vector>

#include "nextn/inference/speculative_decoder.h"
#include "nextn/model/deepseek_v3.h"
#include "test_support.h"

namespace nextn::testing {

// Matrices ~ normal(0, scale), norm weights ~ 1 + normal(0, 0.1), expert biases ~ normal(0, 0.1).
inline DeepSeekV3 random_model(const ModelConfig& config, uint64_t seed, double scale = 0.3,
                               torch::ScalarType dtype = torch::kDouble) {
  torch::manual_seed(seed);
  DeepSeekV3 model(config);
  model->to(dtype);
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) {
    if (p.dim() > 1) {
      p.normal_(0.0, scale);
    } else {
      p.fill_(1.0).add_(torch::randn(p.sizes(), p.options()) * 0.1);
    }
  }
  for (auto& moe : model->moe_layers()) moe->gate->e_score_correction_bias.normal_(0.0, 0.1);
  model->eval();
  return model;
}

// A random model whose sequential MTP modules are decent drafters, so that greedy drafts are
// accepted at every depth: every block writes little into the residual stream (its output
// projections scaled by block_scale), so h^0_i is mostly Emb(t_i) and the main model predicts
// t_{i+1} from t_i; eh_proj mostly passes the token embedding through, so module k at position i,
// fed Emb(t_{i+k}), predicts t_{i+k+1} from t_{i+k} the same way. All norm weights are 1, so the
// two paths differ only by the blocks' small contributions.
inline DeepSeekV3 agreeable_model(const ModelConfig& config, uint64_t seed, double block_scale = 0.01) {
  DeepSeekV3 model = random_model(config, seed, 0.4);
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) {
    const std::string& name = p.key();
    if (name.find("o_proj") != std::string::npos || name.find("down_proj") != std::string::npos) {
      p.value().mul_(block_scale);
    } else if (p.value().dim() == 1) {
      p.value().fill_(1.0);  // the main model's final norm and the modules' norms alike
    }
  }
  const int64_t h = config.hidden_size;
  for (int64_t k = 1; k <= config.mtp_depth(); ++k) {
    auto module = model->mtp_module(k);
    if (!module->eh_proj) continue;
    auto& w = module->eh_proj->weight;  // [h, 2h]: embedding columns first
    w.mul_(0.05);
    w.narrow(1, 0, h).add_(torch::eye(h, w.options()));
  }
  return model;
}

inline ModelConfig parallel_config(int64_t depth = 3) {
  ModelConfig c = tiny_config();
  c.mtp_kind = MtpKind::kParallel;
  c.num_nextn_predict_layers = depth;
  return c;
}

// tiny with a small vocabulary, where drafts are accepted often enough to exercise every branch.
inline ModelConfig small_vocab_config(int64_t vocab, MtpKind kind = MtpKind::kSequential) {
  ModelConfig c = tiny_config();
  c.vocab_size = vocab;
  c.bos_token_id = 0;
  c.eos_token_id = 1;
  c.mtp_kind = kind;
  return c;
}

inline std::vector<int64_t> random_prompt(int64_t length, int64_t vocab, uint64_t seed) {
  std::mt19937_64 engine(seed);
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < length; ++i) ids.push_back(static_cast<int64_t>(engine() % static_cast<uint64_t>(vocab)));
  return ids;
}

// A chain of `drafts` drafts per step, every other option at its default.
inline inference::SpeculativeOptions chain_of_drafts(int64_t drafts, bool reuse_last_module) {
  inference::SpeculativeOptions options;
  options.draft_tokens = drafts;
  options.reuse_last_module = reuse_last_module;
  return options;
}

}  // namespace nextn::testing
