// Multi-head Latent Attention (DeepSeek-V2 section 2.1, DeepSeek-V3 Eq. 1-11).
//
//   q       = W_qb RMSNorm(W_qa x)        (or W_q x when q_lora_rank is null), per head [nope | rope]
//   [c; kr] = W_kva x                     c: the compressed kv latent (kv_lora_rank), kr: a RoPE key
//   c       = RMSNorm(c)                  shared by all heads (qk_rope_head_dim)
//   [kn; v] = W_kvb c                     per head: nope key and value
//   score   = (q_nope . kn + rope(q_pe) . rope(kr)) * softmax_scale, causal
//
// The training/prefill path expands keys and values per head ("naive" form). The decode path
// folds W_kvb into the query and the output and caches only c and rope(kr) ("absorbed" form).
#pragma once

#include <torch/torch.h>

#include "nextn/config/model_config.h"
#include "nextn/model/linear.h"
#include "nextn/model/rms_norm.h"
#include "nextn/model/rotary_embedding.h"

namespace nextn {

// What one layer's input turns into before attention; rotations already applied.
struct MlaProjections {
  torch::Tensor q_nope;  // [B, T, heads, qk_nope_head_dim]
  torch::Tensor q_pe;    // [B, T, heads, qk_rope_head_dim]
  torch::Tensor c_kv;    // [B, T, kv_lora_rank], normalised
  torch::Tensor k_pe;    // [B, T, qk_rope_head_dim], shared by all heads
};

// One attention layer's slice of a latent KV cache (inference::KvCache owns the storage). Only
// what the absorbed form needs is cached: c_kv and the rotated k_pe, per token.
struct LatentKvSlot {
  torch::Tensor c_kv;  // [B, capacity, kv_lora_rank]
  torch::Tensor k_pe;  // [B, capacity, qk_rope_head_dim]
  int64_t length = 0;  // entries [0, length) hold earlier tokens; new tokens are written from here
  // Which new tokens see which: additive [T, T] (0 visible, -inf hidden) for T new tokens that are
  // a tree of drafts rather than a sequence (each sees its ancestors and itself); undefined: causal.
  // Every new token sees all `length` cached ones either way.
  torch::Tensor new_token_mask;
};

// One sequence of a batch decoded together, each with its own cache (continuous batching): rows
// [first_row, first_row + rows) of the step's input are its new tokens, at positions
// slot.length onwards.
struct RaggedSlot {
  LatentKvSlot slot;
  int64_t first_row = 0;
  int64_t rows = 0;
};

// How cached attention is computed. Both give the same result; they differ in cost. Naive expands
// every cached token to per-head keys and values (cheap when many queries share the expansion: a
// prefill); absorbed keeps keys and values in the latent space and moves W_kvb to the query and
// output side (cheap for a few queries over a long cache: decoding, verifying drafts).
enum class MlaForm { kNaive, kAbsorbed };

class MlaAttentionImpl : public torch::nn::Module {
 public:
  explicit MlaAttentionImpl(const ModelConfig& config);

  // x [B, T, hidden], angles for positions 0..T-1 (or the given positions), causal over T.
  torch::Tensor forward(const torch::Tensor& x, const RopeAngles& angles);

  MlaProjections project(const torch::Tensor& x, const RopeAngles& angles);
  // Naive attention of queries over keys/values computed from (c_kv, k_pe); `mask` is additive,
  // [T_q, T_k], or undefined for none. Returns [B, T_q, heads * v_head_dim] before o_proj.
  torch::Tensor attend_naive(const MlaProjections& queries, const torch::Tensor& c_kv,
                             const torch::Tensor& k_pe, const torch::Tensor& mask);
  // The same attention in the absorbed form (DeepSeek-V2 section 2.1.2 "absorb"): with
  // W_kvb = [W_uk; W_uv] per head, q_nope . (W_uk c) = (W_uk^T q_nope) . c, and
  // sum_s p_s (W_uv c_s) = W_uv (sum_s p_s c_s), so scores and the weighted sum run over the
  // kv_lora_rank-wide latents directly and per-head keys/values are never formed.
  torch::Tensor attend_absorbed(const MlaProjections& queries, const torch::Tensor& c_kv,
                                const torch::Tensor& k_pe, const torch::Tensor& mask);

  // Incremental attention for x [B, T, hidden] = T new tokens at positions slot.length ..
  // slot.length + T - 1 (`angles` for those positions): writes their c_kv and k_pe into the slot at
  // [slot.length, slot.length + T) and attends over everything up to them, causally among the new
  // tokens (or as slot.new_token_mask says). The caller advances the cache's length once every
  // layer has written.
  // The absorbed form of decoding's few float32 rows on CPU outside autograd
  // (takes_few_rows_kernels) runs as kernels (kernels/latent_attention.h) instead of libtorch
  // operators; the same result to float rounding.
  torch::Tensor forward_cached(const torch::Tensor& x, const RopeAngles& angles, const LatentKvSlot& slot,
                               MlaForm form);
  // Whether forward_cached(x, angles, slot, kAbsorbed) takes those kernels: the conditions above,
  // and a slot and angles whose shapes fit x (anything else takes the libtorch path, whose
  // operators report the mismatch).
  bool takes_few_rows_kernels(const torch::Tensor& x, const RopeAngles& angles, const LatentKvSlot& slot) const;

  // forward_cached (absorbed form) for several sequences at once: x [1, R, hidden] holds every
  // sequence's new tokens, `angles` [1, R, 1, rope / 2] each row's own position, and each
  // sequence's rows attend over its own slot. The projections run once over all R rows; each
  // row's result is what forward_cached computes for its sequence alone (bit for bit on the
  // kernel path, under ScopedBatchedDecoding).
  torch::Tensor forward_cached_ragged(const torch::Tensor& x, const RopeAngles& angles,
                                      const std::vector<RaggedSlot>& sequences);

  const ModelConfig& config() const { return config_; }

  // Query path: either q_proj, or q_a_proj -> q_a_layernorm -> q_b_proj (q_lora_rank set).
  Linear q_proj{nullptr}, q_a_proj{nullptr}, q_b_proj{nullptr};
  RMSNorm q_a_layernorm{nullptr};
  Linear kv_a_proj_with_mqa{nullptr}, kv_b_proj{nullptr}, o_proj{nullptr};
  RMSNorm kv_a_layernorm{nullptr};

 private:
  // forward_cached's absorbed form for decoding's few float32 rows on CPU, in kernels
  // (kernels/latent_attention.h, kernels/row_ops.h) instead of ~40 libtorch operators.
  torch::Tensor forward_cached_few_rows(const torch::Tensor& x, const RopeAngles& angles, const LatentKvSlot& slot);
  // The steps of those kernels: the query and key projections of rows; one row's new cache entry
  // (normalised latent, rotated rope key) and its rotated query; one sequence's attention.
  std::pair<torch::Tensor, torch::Tensor> project_rows(const torch::Tensor& x);
  void write_row(const float* kv_row, float* q_row, float* c_entry, float* k_entry, const float* cos,
                 const float* sin) const;
  // tree_visibility: [rows, rows], nonzero where new token t sees new token u (null: causal).
  void attend_rows(const float* q, int64_t rows, const LatentKvSlot& slot, int64_t batch_row, int64_t length,
                   float* out, const uint8_t* tree_visibility = nullptr) const;

  // forward's causal mask, built once per length, dtype and device rather than at every call.
  const torch::Tensor& training_mask(int64_t length, const torch::TensorOptions& options);

  ModelConfig config_;
  double softmax_scale_;
  torch::Tensor training_mask_;
};
TORCH_MODULE(MlaAttention);

// Additive causal mask [T, T]: 0 on and below the diagonal, -inf above.
torch::Tensor causal_mask(int64_t length, const torch::TensorOptions& options);
// Additive mask [T, cached + T] for T new tokens appended after `cached` ones: new token j sees every
// cached token and the new tokens 0..j.
torch::Tensor append_causal_mask(int64_t new_tokens, int64_t cached, const torch::TensorOptions& options);

}  // namespace nextn
