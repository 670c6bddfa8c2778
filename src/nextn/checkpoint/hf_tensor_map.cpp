#include "nextn/checkpoint/hf_tensor_map.h"

#include "nextn/util/error.h"

namespace nextn {
namespace {

class TensorMapBuilder {
 public:
  TensorMapBuilder(std::vector<HfTensor>& out, const FullExperts& full_experts)
      : out_(out), full_experts_(full_experts) {}

  void add(const std::string& name, const torch::Tensor& tensor, bool shared_copy = false, bool keep_fp32 = false) {
    out_.push_back({name, tensor, shared_copy, keep_fp32});
  }

  void add_norm(const std::string& name, RMSNorm& norm) { add(name, norm->weight); }
  void add_linear(const std::string& name, Linear& linear) { add(name, linear->weight); }

  void add_attention(const std::string& prefix, MlaAttention& attn) {
    if (attn->q_proj) {
      add_linear(prefix + "q_proj.weight", attn->q_proj);
    } else {
      add_linear(prefix + "q_a_proj.weight", attn->q_a_proj);
      add_norm(prefix + "q_a_layernorm.weight", attn->q_a_layernorm);
      add_linear(prefix + "q_b_proj.weight", attn->q_b_proj);
    }
    add_linear(prefix + "kv_a_proj_with_mqa.weight", attn->kv_a_proj_with_mqa);
    add_norm(prefix + "kv_a_layernorm.weight", attn->kv_a_layernorm);
    add_linear(prefix + "kv_b_proj.weight", attn->kv_b_proj);
    add_linear(prefix + "o_proj.weight", attn->o_proj);
  }

  void add_dense_mlp(const std::string& prefix, DenseMlp& mlp) {
    add_linear(prefix + "gate_proj.weight", mlp->gate_proj);
    add_linear(prefix + "up_proj.weight", mlp->up_proj);
    add_linear(prefix + "down_proj.weight", mlp->down_proj);
  }

  void add_moe(const std::string& prefix, Moe& moe) {
    add(prefix + "gate.weight", moe->gate->weight);
    add(prefix + "gate.e_score_correction_bias", moe->gate->e_score_correction_bias, false, /*keep_fp32=*/true);
    const int64_t inter = moe->experts->intermediate_size();
    auto full = full_experts_.find(moe->experts.get());
    const bool gathered = full != full_experts_.end();
    const torch::Tensor& gate_up = gathered ? full->second.gate_up_proj : moe->experts->gate_up_proj;
    const torch::Tensor& down = gathered ? full->second.down_proj : moe->experts->down_proj;
    const int64_t first = gathered ? 0 : moe->experts->first_expert();
    for (int64_t j = 0; j < gate_up.size(0); ++j) {
      const std::string expert = prefix + "experts." + std::to_string(first + j) + ".";
      add(expert + "gate_proj.weight", gate_up[j].narrow(0, 0, inter));
      add(expert + "up_proj.weight", gate_up[j].narrow(0, inter, inter));
      add(expert + "down_proj.weight", down[j]);
    }
    if (moe->shared_experts) add_dense_mlp(prefix + "shared_experts.", moe->shared_experts);
  }

  void add_decoder_layer(const std::string& prefix, DecoderLayer& layer) {
    add_norm(prefix + "input_layernorm.weight", layer->input_layernorm);
    add_attention(prefix + "self_attn.", layer->self_attn);
    add_norm(prefix + "post_attention_layernorm.weight", layer->post_attention_layernorm);
    if (layer->is_moe()) {
      add_moe(prefix + "mlp.", layer->moe);
    } else {
      add_dense_mlp(prefix + "mlp.", layer->mlp);
    }
  }

 private:
  std::vector<HfTensor>& out_;
  const FullExperts& full_experts_;
};

}  // namespace

std::vector<HfTensor> hf_tensor_map(DeepSeekV3Impl& model, const FullExperts& full_experts) {
  const ModelConfig& c = model.config();
  std::vector<HfTensor> map;
  TensorMapBuilder b(map, full_experts);
  b.add("model.embed_tokens.weight", model.embed_tokens->weight);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    DecoderLayer layer = model.layer(i);
    b.add_decoder_layer("model.layers." + std::to_string(i) + ".", layer);
  }
  b.add_norm("model.norm.weight", model.norm);
  if (!c.tie_word_embeddings) b.add_linear("lm_head.weight", model.lm_head);
  for (int64_t k = 1; k <= c.num_nextn_predict_layers; ++k) {
    MtpModule module = model.mtp_module(k);
    const std::string prefix = "model.layers." + std::to_string(c.num_hidden_layers + k - 1) + ".";
    b.add(prefix + "embed_tokens.weight", model.embed_tokens->weight, /*shared_copy=*/true);
    if (c.mtp_kind == MtpKind::kSequential) {
      b.add_norm(prefix + "enorm.weight", module->enorm);
      b.add_norm(prefix + "hnorm.weight", module->hnorm);
      b.add_linear(prefix + "eh_proj.weight", module->eh_proj);
    }
    b.add_decoder_layer(prefix, module->block);
    b.add_norm(prefix + "shared_head.norm.weight", module->shared_head_norm);
    b.add(prefix + "shared_head.head.weight", model.output_weight(), /*shared_copy=*/true);
  }
  return map;
}

}  // namespace nextn
