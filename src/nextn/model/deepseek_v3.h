// The whole model: embedding, num_hidden_layers decoder layers (dense then MoE), final norm and
// output head, plus D multi-token-prediction modules sharing the embedding and the head.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "nextn/config/model_config.h"
#include "nextn/model/decoder_layer.h"
#include "nextn/model/moe.h"
#include "nextn/model/mtp_module.h"
#include "nextn/model/linear.h"
#include "nextn/model/rms_norm.h"
#include "nextn/model/rotary_embedding.h"

namespace nextn {

struct ForwardOptions {
  bool run_mtp = true;       // false: main model only (inference, or the --no-mtp baseline)
  bool collect_moe_stats = true;
  // Leave the logits out: hand back each head's normed input and the head weight instead, for
  // the fused head + cross-entropy (fused_head_loss.h), which never holds [B, T, V] logits.
  bool fused_head_loss = false;
};

struct ModelOutput {
  torch::Tensor logits;  // [B, T, V]: position i predicts t_{i+1}
  torch::Tensor hidden;  // [B, T, hidden]: h^0, last layer output before the final norm
  // Depth k = 1..D at index k-1: [B, T-k, V], position i predicts t_{i+k+1} (Eq. 23).
  std::vector<torch::Tensor> mtp_logits;
  std::vector<torch::Tensor> mtp_hidden;  // h^k, [B, T-k, hidden]
  // With fused_head_loss, instead of the logits: the output head's inputs (after the final norm,
  // or each MTP module's shared_head_norm) and the head weight [V, hidden] they all share.
  torch::Tensor head_input;
  std::vector<torch::Tensor> mtp_head_input;
  torch::Tensor head_weight;
  // One entry per MoE layer that ran: the main model's in layer order, then each MTP module's.
  std::vector<MoeStats> moe_stats;
};

class DeepSeekV3Impl : public torch::nn::Module {
 public:
  explicit DeepSeekV3Impl(const ModelConfig& config);

  // input_ids int64 [B, T] with T <= max_position_embeddings.
  ModelOutput forward(const torch::Tensor& input_ids, const ForwardOptions& options = {});

  // Building blocks, shared with inference (KV-cached decoding, speculative drafting).
  torch::Tensor embed(const torch::Tensor& ids);
  torch::Tensor output_head(const torch::Tensor& hidden, RMSNorm& norm_before_head);
  torch::Tensor& output_weight();  // lm_head.weight, or the embedding when tied

  // Normal(0, initializer_range) for matrices, ones for norm weights, zero expert bias
  // (HF DeepseekV3PreTrainedModel._init_weights). Uses torch's global generator.
  void init_weights();

  const ModelConfig& config() const { return config_; }

  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
  Linear lm_head{nullptr};  // null when tie_word_embeddings
  torch::nn::ModuleList mtp{nullptr};  // D MtpModule
  RotaryEmbedding rotary{nullptr};

  DecoderLayer layer(int64_t i) { return DecoderLayer(layers->ptr<DecoderLayerImpl>(i)); }
  MtpModule mtp_module(int64_t k) { return MtpModule(mtp->ptr<MtpModuleImpl>(k - 1)); }
  std::vector<Moe> moe_layers();  // every MoE layer, main model first, then MTP modules

 private:
  void run_mtp_modules(const torch::Tensor& embeddings, ModelOutput& out, const ForwardOptions& options);
  ModelConfig config_;
};
TORCH_MODULE(DeepSeekV3);

}  // namespace nextn
