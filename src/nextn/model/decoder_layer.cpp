#include "nextn/model/decoder_layer.h"

#include "nextn/util/phase_timer.h"

namespace nextn {

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& config, int64_t layer_index) {
  input_layernorm = register_module("input_layernorm", RMSNorm(config.hidden_size, config.rms_norm_eps));
  self_attn = register_module("self_attn", MlaAttention(config));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(config.hidden_size, config.rms_norm_eps));
  if (config.is_moe_layer(layer_index)) {
    moe = register_module("mlp", Moe(config));
  } else {
    mlp = register_module("mlp", DenseMlp(config.hidden_size, config.intermediate_size));
  }
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const RopeAngles& angles, MoeStats* moe_stats) {
  auto h = x + self_attn(input_layernorm(x), angles);
  return add_feed_forward(h, moe_stats);
}

torch::Tensor DecoderLayerImpl::forward_cached(const torch::Tensor& x, const RopeAngles& angles,
                                               const LatentKvSlot& slot, MlaForm form, CachedOutput output) {
  auto h = x + self_attn->forward_cached(input_layernorm(x), angles, slot, form);
  if (output == CachedOutput::kLastToken) h = h.narrow(1, h.size(1) - 1, 1);
  return add_feed_forward(h, nullptr);
}

torch::Tensor DecoderLayerImpl::forward_cached_ragged(const torch::Tensor& x, const RopeAngles& angles,
                                                      const std::vector<RaggedSlot>& sequences) {
  torch::Tensor h;
  {
    ScopedPhase phase("decode.attention");
    h = x + self_attn->forward_cached_ragged(input_layernorm(x), angles, sequences);
  }
  ScopedPhase phase(is_moe() ? "decode.moe" : "decode.dense_mlp");
  return add_feed_forward(h, nullptr);
}

torch::Tensor DecoderLayerImpl::add_feed_forward(const torch::Tensor& h, MoeStats* moe_stats) {
  auto normed = post_attention_layernorm(h);
  return h + (is_moe() ? moe(normed, moe_stats) : mlp(normed));
}

}  // namespace nextn
