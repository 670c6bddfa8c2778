#include "nextn/model/deepseek_v3.h"

#include "nextn/model/dense_mlp.h"
#include "nextn/util/error.h"
#include "nextn/util/memory_info.h"

namespace nextn {

DeepSeekV3Impl::DeepSeekV3Impl(const ModelConfig& config) : config_(config) {
  config_.validate();
  // Its weights are created in float32: refuse what cannot fit before the first allocation.
  const int64_t parameters = count_parameters(config_).total;
  check_fits_in_memory(4.0 * static_cast<double>(parameters),
                       cat("a model of ", parameters, " parameters (", parameters / 1e9, "B, float32)"));
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(config.vocab_size, config.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) layers->push_back(DecoderLayer(config, i));
  norm = register_module("norm", RMSNorm(config.hidden_size, config.rms_norm_eps));
  if (!config.tie_word_embeddings) {
    lm_head = register_module("lm_head", Linear(config.hidden_size, config.vocab_size));
  }
  mtp = register_module("mtp", torch::nn::ModuleList());
  for (int64_t k = 1; k <= config.num_nextn_predict_layers; ++k) mtp->push_back(MtpModule(config, k));
  rotary = register_module("rotary", RotaryEmbedding(config));
  init_weights();
}

void DeepSeekV3Impl::init_weights() {
  torch::NoGradGuard no_grad;
  for (auto& p : named_parameters()) {
    // Every 1-D parameter is a norm weight; everything else is a projection or an embedding.
    if (p.value().dim() == 1) {
      p.value().fill_(1.0);
    } else {
      p.value().normal_(0.0, config_.initializer_range);
    }
  }
  for (auto& moe : moe_layers()) moe->gate->e_score_correction_bias.zero_();
}

torch::Tensor& DeepSeekV3Impl::output_weight() {
  return config_.tie_word_embeddings ? embed_tokens->weight : lm_head->weight;
}

torch::Tensor DeepSeekV3Impl::embed(const torch::Tensor& ids) { return embed_tokens(ids); }

torch::Tensor DeepSeekV3Impl::output_head(const torch::Tensor& hidden, RMSNorm& norm_before_head) {
  return linear_no_bias(norm_before_head(hidden), output_weight());
}

std::vector<Moe> DeepSeekV3Impl::moe_layers() {
  std::vector<Moe> result;
  for (int64_t i = 0; i < config_.num_hidden_layers; ++i) {
    if (layer(i)->is_moe()) result.push_back(layer(i)->moe);
  }
  for (int64_t k = 1; k <= config_.num_nextn_predict_layers; ++k) {
    if (mtp_module(k)->block->is_moe()) result.push_back(mtp_module(k)->block->moe);
  }
  return result;
}

ModelOutput DeepSeekV3Impl::forward(const torch::Tensor& input_ids, const ForwardOptions& options) {
  NEXTN_CHECK(input_ids.dim() == 2, "input_ids must be [batch, length], got ", input_ids.sizes());
  const int64_t length = input_ids.size(1);
  NEXTN_CHECK(length >= 1 && length <= config_.max_position_embeddings, "sequence length ", length,
              " is outside [1, max_position_embeddings=", config_.max_position_embeddings, "]");
  ModelOutput out;
  auto embeddings = embed(input_ids);
  auto angles = rotary->angles(length);
  auto h = embeddings;
  for (int64_t i = 0; i < config_.num_hidden_layers; ++i) {
    DecoderLayer l = layer(i);
    MoeStats stats;
    h = l(h, angles, l->is_moe() && options.collect_moe_stats ? &stats : nullptr);
    if (l->is_moe() && options.collect_moe_stats) out.moe_stats.push_back(stats);
  }
  out.hidden = h;
  if (options.fused_head_loss) {
    out.head_input = norm(h);
    out.head_weight = output_weight();
  } else {
    out.logits = output_head(h, norm);
  }
  if (options.run_mtp) run_mtp_modules(embeddings, out, options);
  return out;
}

void DeepSeekV3Impl::run_mtp_modules(const torch::Tensor& embeddings, ModelOutput& out, const ForwardOptions& options) {
  const bool collect_stats = options.collect_moe_stats;
  const int64_t length = embeddings.size(1);
  torch::Tensor previous = out.hidden;  // h^0
  for (int64_t k = 1; k <= config_.num_nextn_predict_layers && k < length; ++k) {
    MtpModule module = mtp_module(k);
    const int64_t span = length - k;  // positions 0..T-k-1 have a target t_{i+k+1} inside the window
    auto angles = rotary->angles(span);
    // Sequential: h^{k-1} at positions 0..T-k-1 and Emb(t_{i+k}) = embeddings[:, k:]. Parallel:
    // every head reads the trunk's h^0.
    auto input_hidden = (config_.mtp_kind == MtpKind::kSequential ? previous : out.hidden).narrow(1, 0, span);
    auto token_embeddings = config_.mtp_kind == MtpKind::kSequential ? embeddings.narrow(1, k, span) : torch::Tensor();
    MoeStats stats;
    bool moe = module->block->is_moe() && collect_stats;
    auto h = module(input_hidden, token_embeddings, angles, moe ? &stats : nullptr);
    if (moe) out.moe_stats.push_back(stats);
    out.mtp_hidden.push_back(h);
    if (options.fused_head_loss) {
      out.mtp_head_input.push_back(module->shared_head_norm(h));
    } else {
      out.mtp_logits.push_back(output_head(h, module->shared_head_norm));
    }
    previous = h;
  }
}

}  // namespace nextn
