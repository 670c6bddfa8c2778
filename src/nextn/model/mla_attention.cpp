#include "nextn/model/mla_attention.h"

#include <limits>

#include "nextn/model/dense_mlp.h"

namespace nextn {

torch::Tensor causal_mask(int64_t length, const torch::TensorOptions& options) {
  return torch::full({length, length}, -std::numeric_limits<double>::infinity(), options).triu(1);
}

MlaAttentionImpl::MlaAttentionImpl(const ModelConfig& config)
    : config_(config), softmax_scale_(config.softmax_scale()) {
  const int64_t h = config.hidden_size;
  const int64_t heads = config.num_attention_heads;
  if (config.q_lora_rank) {
    q_a_proj = register_module("q_a_proj", linear_no_bias(h, *config.q_lora_rank));
    q_a_layernorm = register_module("q_a_layernorm", RMSNorm(*config.q_lora_rank, config.rms_norm_eps));
    q_b_proj = register_module("q_b_proj", linear_no_bias(*config.q_lora_rank, heads * config.qk_head_dim()));
  } else {
    q_proj = register_module("q_proj", linear_no_bias(h, heads * config.qk_head_dim()));
  }
  kv_a_proj_with_mqa = register_module(
      "kv_a_proj_with_mqa", linear_no_bias(h, config.kv_lora_rank + config.qk_rope_head_dim));
  kv_a_layernorm = register_module("kv_a_layernorm", RMSNorm(config.kv_lora_rank, config.rms_norm_eps));
  kv_b_proj = register_module(
      "kv_b_proj", linear_no_bias(config.kv_lora_rank, heads * (config.qk_nope_head_dim + config.v_head_dim)));
  o_proj = register_module("o_proj", linear_no_bias(heads * config.v_head_dim, h));
}

MlaProjections MlaAttentionImpl::project(const torch::Tensor& x, const RopeAngles& angles) {
  const int64_t batch = x.size(0), length = x.size(1);
  const int64_t heads = config_.num_attention_heads;
  auto q = config_.q_lora_rank ? q_b_proj(q_a_layernorm(q_a_proj(x))) : q_proj(x);
  q = q.view({batch, length, heads, config_.qk_head_dim()});
  auto q_parts = q.split({config_.qk_nope_head_dim, config_.qk_rope_head_dim}, -1);

  auto kv = kv_a_proj_with_mqa(x);
  auto kv_parts = kv.split({config_.kv_lora_rank, config_.qk_rope_head_dim}, -1);
  auto k_pe = apply_rotary(kv_parts[1].unsqueeze(2), angles).squeeze(2);

  return {q_parts[0], apply_rotary(q_parts[1], angles), kv_a_layernorm(kv_parts[0]), k_pe};
}

torch::Tensor MlaAttentionImpl::attend_naive(const MlaProjections& queries, const torch::Tensor& c_kv,
                                             const torch::Tensor& k_pe, const torch::Tensor& mask) {
  const int64_t batch = c_kv.size(0), kv_length = c_kv.size(1);
  const int64_t q_length = queries.q_nope.size(1);
  const int64_t heads = config_.num_attention_heads;
  auto kv = kv_b_proj(c_kv).view({batch, kv_length, heads, config_.qk_nope_head_dim + config_.v_head_dim});
  auto kv_parts = kv.split({config_.qk_nope_head_dim, config_.v_head_dim}, -1);

  // [B, heads, T, d]: the rope key is shared by all heads, so it is broadcast, not copied.
  auto q_nope = queries.q_nope.transpose(1, 2);
  auto q_pe = queries.q_pe.transpose(1, 2);
  auto k_nope = kv_parts[0].transpose(1, 2);
  auto value = kv_parts[1].transpose(1, 2);
  auto scores = torch::matmul(q_nope, k_nope.transpose(-1, -2)) +
                torch::matmul(q_pe, k_pe.unsqueeze(1).transpose(-1, -2));
  auto dtype = compute_dtype(scores.scalar_type());
  auto probs = torch::softmax(scores.to(dtype) * softmax_scale_ + mask.to(dtype), -1).to(value.scalar_type());
  auto out = torch::matmul(probs, value);  // [B, heads, T_q, v]
  return out.transpose(1, 2).reshape({batch, q_length, heads * config_.v_head_dim});
}

torch::Tensor MlaAttentionImpl::forward(const torch::Tensor& x, const RopeAngles& angles) {
  auto p = project(x, angles);
  auto mask = causal_mask(x.size(1), torch::TensorOptions().dtype(compute_dtype(x.scalar_type())).device(x.device()));
  return o_proj(attend_naive(p, p.c_kv, p.k_pe, mask));
}

}  // namespace nextn
