// One pre-norm transformer block: x + MLA(norm(x)), then + FFN(norm(.)) where the FFN is a dense
// SwiGLU (layers below first_k_dense_replace) or a DeepSeekMoE layer. HF names: input_layernorm,
// self_attn, post_attention_layernorm, mlp.
#pragma once

#include <torch/torch.h>

#include "nextn/config/model_config.h"
#include "nextn/model/dense_mlp.h"
#include "nextn/model/mla_attention.h"
#include "nextn/model/moe.h"
#include "nextn/model/rms_norm.h"

namespace nextn {

// Which new tokens' outputs DecoderLayerImpl::forward_cached returns. Every new token enters the
// KV cache either way; kLastToken runs the feed-forward (the MoE: most of a block's weights) on the
// last token only and returns [B, 1, hidden]. For a block whose other outputs nobody reads: the
// deepest MTP depth while drafting needs its earlier positions only in its cache.
enum class CachedOutput { kEveryToken, kLastToken };

class DecoderLayerImpl : public torch::nn::Module {
 public:
  // layer_index decides dense vs MoE (MTP modules use num_hidden_layers + k - 1).
  DecoderLayerImpl(const ModelConfig& config, int64_t layer_index);
  // `moe_stats` receives the MoE statistics of this layer when it is an MoE layer.
  torch::Tensor forward(const torch::Tensor& x, const RopeAngles& angles, MoeStats* moe_stats = nullptr);
  // The same block for new tokens appended after the cached ones (MlaAttentionImpl::forward_cached).
  // Inference only: no MoE statistics.
  torch::Tensor forward_cached(const torch::Tensor& x, const RopeAngles& angles, const LatentKvSlot& slot,
                               MlaForm form, CachedOutput output = CachedOutput::kEveryToken);

  // forward_cached for several sequences with caches of their own (MlaAttentionImpl::forward_cached_ragged).
  torch::Tensor forward_cached_ragged(const torch::Tensor& x, const RopeAngles& angles,
                                      const std::vector<RaggedSlot>& sequences);

  bool is_moe() const { return !moe.is_empty(); }

  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  MlaAttention self_attn{nullptr};
  DenseMlp mlp{nullptr};  // dense layers
  Moe moe{nullptr};       // MoE layers (HF prefix "mlp." as well)

 private:
  // h + FFN(post_attention_layernorm(h)), the second half of the block.
  torch::Tensor add_feed_forward(const torch::Tensor& h, MoeStats* moe_stats);
};
TORCH_MODULE(DecoderLayer);

}  // namespace nextn
