#include "nextn/model/model_flops.h"

namespace nextn {
namespace {

// Multiply-adds per token of one decoder block's weight products (layer index: dense or MoE).
int64_t block_macs_per_token(const ModelConfig& c, int64_t layer) {
  const int64_t h = c.hidden_size, heads = c.num_attention_heads;
  int64_t macs = c.q_lora_rank ? h * *c.q_lora_rank + *c.q_lora_rank * heads * c.qk_head_dim()
                               : h * heads * c.qk_head_dim();
  macs += h * (c.kv_lora_rank + c.qk_rope_head_dim);                       // kv_a_proj_with_mqa
  macs += c.kv_lora_rank * heads * (c.qk_nope_head_dim + c.v_head_dim);    // kv_b_proj
  macs += heads * c.v_head_dim * h;                                        // o_proj
  const int64_t expert = 3 * h * c.moe_intermediate_size;                  // gate, up, down
  if (c.is_moe_layer(layer)) {
    macs += h * c.n_routed_experts;                                        // router
    macs += (c.n_shared_experts + c.num_experts_per_tok) * expert;
  } else {
    macs += 3 * h * c.intermediate_size;
  }
  return macs;
}

// Multiply-adds of one block's attention over `batch` windows of `length` positions.
int64_t attention_macs(const ModelConfig& c, int64_t batch, int64_t length) {
  const int64_t per_pair = c.qk_nope_head_dim + c.qk_rope_head_dim + c.v_head_dim;
  return batch * c.num_attention_heads * length * length * per_pair;
}

}  // namespace

ModelFlops forward_flops(const ModelConfig& c, int64_t batch, int64_t length, bool with_mtp) {
  const int64_t h = c.hidden_size;
  const int64_t head_macs = c.vocab_size * h;
  int64_t projection_macs = 0, attn_macs = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    projection_macs += batch * length * block_macs_per_token(c, l);
    attn_macs += attention_macs(c, batch, length);
  }
  projection_macs += batch * length * head_macs;
  if (with_mtp) {
    for (int64_t k = 1; k <= c.num_nextn_predict_layers && k < length; ++k) {
      const int64_t span = length - k;
      const int64_t layer = c.num_hidden_layers + k - 1;
      int64_t per_token = block_macs_per_token(c, layer) + head_macs;
      if (c.mtp_kind == MtpKind::kSequential) per_token += 2 * h * h;  // eh_proj
      projection_macs += batch * span * per_token;
      attn_macs += attention_macs(c, batch, span);
    }
  }
  return {2 * projection_macs, 2 * attn_macs};
}

int64_t training_step_flops(const ModelConfig& c, int64_t batch, int64_t length, bool with_mtp) {
  return 3 * forward_flops(c, batch, length, with_mtp).total();
}

}  // namespace nextn
