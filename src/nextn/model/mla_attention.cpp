#include "nextn/model/mla_attention.h"

#include <algorithm>
#include <atomic>
#include <limits>

#include "nextn/kernels/few_rows_matmul.h"
#include "nextn/kernels/latent_attention.h"
#include "nextn/kernels/row_ops.h"
#include "nextn/kernels/worker_pool.h"
#include "nextn/model/batched_matmul.h"
#include "nextn/model/linear.h"
#include "nextn/model/softmax_to.h"
#include "nextn/util/error.h"

namespace nextn {

namespace {

void check_new_token_mask(const LatentKvSlot& slot, int64_t new_tokens) {
  const auto& mask = slot.new_token_mask;
  NEXTN_CHECK(mask.dim() == 2 && mask.size(0) == new_tokens && mask.size(1) == new_tokens, "a mask among ",
              new_tokens, " new tokens must be [", new_tokens, ", ", new_tokens, "], got ", mask.sizes());
}

}  // namespace

torch::Tensor causal_mask(int64_t length, const torch::TensorOptions& options) {
  return torch::full({length, length}, -std::numeric_limits<double>::infinity(), options).triu(1);
}

torch::Tensor append_causal_mask(int64_t new_tokens, int64_t cached, const torch::TensorOptions& options) {
  // Key s is hidden from new token j when s > cached + j, i.e. on diagonals >= cached + 1.
  return torch::full({new_tokens, cached + new_tokens}, -std::numeric_limits<double>::infinity(), options)
      .triu(cached + 1);
}

MlaAttentionImpl::MlaAttentionImpl(const ModelConfig& config)
    : config_(config), softmax_scale_(config.softmax_scale()) {
  const int64_t h = config.hidden_size;
  const int64_t heads = config.num_attention_heads;
  if (config.q_lora_rank) {
    q_a_proj = register_module("q_a_proj", Linear(h, *config.q_lora_rank));
    q_a_layernorm = register_module("q_a_layernorm", RMSNorm(*config.q_lora_rank, config.rms_norm_eps));
    q_b_proj = register_module("q_b_proj", Linear(*config.q_lora_rank, heads * config.qk_head_dim()));
  } else {
    q_proj = register_module("q_proj", Linear(h, heads * config.qk_head_dim()));
  }
  kv_a_proj_with_mqa = register_module(
      "kv_a_proj_with_mqa", Linear(h, config.kv_lora_rank + config.qk_rope_head_dim));
  kv_a_layernorm = register_module("kv_a_layernorm", RMSNorm(config.kv_lora_rank, config.rms_norm_eps));
  kv_b_proj = register_module(
      "kv_b_proj", Linear(config.kv_lora_rank, heads * (config.qk_nope_head_dim + config.v_head_dim)));
  o_proj = register_module("o_proj", Linear(heads * config.v_head_dim, h));
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
  auto scores = batched_matmul(q_nope, k_nope.transpose(-1, -2)) +
                batched_matmul(q_pe, k_pe.unsqueeze(1).transpose(-1, -2));
  auto dtype = compute_dtype(scores.scalar_type());
  auto logits = scores.to(dtype) * softmax_scale_;
  if (mask.defined()) logits = logits + mask.to(dtype);
  auto probs = softmax_to(logits, value.scalar_type());  // bf16 training: one copy kept, the bf16 one
  auto out = batched_matmul(probs, value);  // [B, heads, T_q, v]
  return out.transpose(1, 2).reshape({batch, q_length, heads * config_.v_head_dim});
}

torch::Tensor MlaAttentionImpl::attend_absorbed(const MlaProjections& queries, const torch::Tensor& c_kv,
                                                const torch::Tensor& k_pe, const torch::Tensor& mask) {
  const int64_t batch = c_kv.size(0), kv_length = c_kv.size(1);
  const int64_t q_length = queries.q_nope.size(1);
  const int64_t heads = config_.num_attention_heads, rank = config_.kv_lora_rank;
  const int64_t nope = config_.qk_nope_head_dim, rope = config_.qk_rope_head_dim, v_dim = config_.v_head_dim;
  // kv_b_proj.weight is [heads * (nope + v), rank]: per head, the nope-key rows then the value rows.
  auto w_kvb = kv_b_proj->weight.view({heads, nope + v_dim, rank});
  auto w_uk = w_kvb.narrow(1, 0, nope);     // [heads, nope, rank]: k_nope = w_uk c
  auto w_uv = w_kvb.narrow(1, nope, v_dim);  // [heads, v, rank]:   v = w_uv c

  // Queries into the latent space, per head: [heads, B*T_q, nope] x [heads, nope, rank].
  auto q_nope = queries.q_nope.permute({2, 0, 1, 3}).reshape({heads, batch * q_length, nope});
  auto q_latent = torch::bmm(q_nope, w_uk).view({heads, batch, q_length, rank});
  // Heads and query positions become the rows of one [B, heads*T_q, .] x [B, ., S] product, so the
  // cache is read once per batch row and never copied per head.
  q_latent = q_latent.permute({1, 0, 2, 3}).reshape({batch, heads * q_length, rank});
  auto q_pe = queries.q_pe.transpose(1, 2).reshape({batch, heads * q_length, rope});
  auto scores = torch::bmm(q_latent, c_kv.transpose(1, 2)) + torch::bmm(q_pe, k_pe.transpose(1, 2));

  auto dtype = compute_dtype(scores.scalar_type());
  auto logits = scores.to(dtype).view({batch, heads, q_length, kv_length}) * softmax_scale_;
  if (mask.defined()) logits = logits + mask.to(dtype);
  auto probs = torch::softmax(logits, -1).to(c_kv.scalar_type()).view({batch, heads * q_length, kv_length});

  // Weighted sum of latents, then W_uv per head: [heads, B*T_q, rank] x [heads, rank, v].
  auto latent_out = torch::bmm(probs, c_kv).view({batch, heads, q_length, rank});
  latent_out = latent_out.permute({1, 0, 2, 3}).reshape({heads, batch * q_length, rank});
  auto out = torch::bmm(latent_out, w_uv.transpose(1, 2)).view({heads, batch, q_length, v_dim});
  return out.permute({1, 2, 0, 3}).reshape({batch, q_length, heads * v_dim});
}

torch::Tensor MlaAttentionImpl::forward_cached(const torch::Tensor& x, const RopeAngles& angles,
                                               const LatentKvSlot& slot, MlaForm form) {
  const int64_t new_tokens = x.size(1), cached = slot.length;
  NEXTN_CHECK(cached + new_tokens <= slot.c_kv.size(1), "KV cache overflow: ", cached, " cached + ", new_tokens,
              " new tokens exceed its capacity of ", slot.c_kv.size(1));
  if (form == MlaForm::kAbsorbed && takes_few_rows_kernels(x, angles, slot)) {
    return forward_cached_few_rows(x, angles, slot);
  }
  auto p = project(x, angles);
  slot.c_kv.narrow(1, cached, new_tokens).copy_(p.c_kv);
  slot.k_pe.narrow(1, cached, new_tokens).copy_(p.k_pe);
  auto c_kv = slot.c_kv.narrow(1, 0, cached + new_tokens);
  auto k_pe = slot.k_pe.narrow(1, 0, cached + new_tokens);
  // A single new token sees everything: no mask to build.
  const auto mask_options = torch::TensorOptions().dtype(compute_dtype(x.scalar_type())).device(x.device());
  torch::Tensor mask;
  if (slot.new_token_mask.defined()) {
    check_new_token_mask(slot, new_tokens);
    mask = torch::cat({torch::zeros({new_tokens, cached}, mask_options), slot.new_token_mask.to(mask_options)}, 1);
  } else if (new_tokens > 1) {
    mask = append_causal_mask(new_tokens, cached, mask_options);
  }
  auto attended = form == MlaForm::kAbsorbed ? attend_absorbed(p, c_kv, k_pe, mask) : attend_naive(p, c_kv, k_pe, mask);
  return o_proj(attended);
}

namespace {

// CPU float32 with contiguous last dimension: rows the kernels can read through a row stride.
bool cpu_float32_rows(const torch::Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == torch::kFloat && t.stride(-1) == 1;
}

// A [1 or B, T, 1, rope / 2] angle table for batch B and T new tokens.
bool fits_angles(const torch::Tensor& table, int64_t batch, int64_t new_tokens, int64_t rope) {
  return cpu_float32_rows(table) && table.dim() == 4 && (table.size(0) == 1 || table.size(0) == batch) &&
         table.size(1) == new_tokens && table.size(2) == 1 && table.size(3) == rope / 2;
}

// A [B', capacity, width] cache tensor with room for the new tokens of all B rows of the input.
bool fits_cache(const torch::Tensor& cache, int64_t batch, int64_t width, int64_t end) {
  return cpu_float32_rows(cache) && cache.dim() == 3 && cache.size(0) >= batch && cache.size(2) == width &&
         cache.size(1) >= end;
}

// The angles of new token t of batch row b.
const float* angle_row(const torch::Tensor& table, int64_t b, int64_t t) {
  return table.data_ptr<float>() + (table.size(0) == 1 ? 0 : b * table.stride(0)) + t * table.stride(1);
}

}  // namespace

bool MlaAttentionImpl::takes_few_rows_kernels(const torch::Tensor& x, const RopeAngles& angles,
                                              const LatentKvSlot& slot) const {
  if (x.dim() != 3 || !nextn::takes_few_rows_kernels(x, kv_a_proj_with_mqa->weight, config_.hidden_size)) return false;
  const int64_t batch = x.size(0), new_tokens = x.size(1), end = slot.length + new_tokens;
  const int64_t rope = config_.qk_rope_head_dim;
  return fits_cache(slot.c_kv, batch, config_.kv_lora_rank, end) && fits_cache(slot.k_pe, batch, rope, end) &&
         fits_angles(angles.cos, batch, new_tokens, rope) && fits_angles(angles.sin, batch, new_tokens, rope) &&
         cpu_float32_rows(kv_b_proj->weight) && kv_b_proj->weight.is_contiguous() &&
         cpu_float32_rows(kv_a_layernorm->weight);
}

std::pair<torch::Tensor, torch::Tensor> MlaAttentionImpl::project_rows(const torch::Tensor& x) {
  // Projections as in project(); the products take the few-rows kernel.
  auto q = (config_.q_lora_rank ? q_b_proj(q_a_layernorm(q_a_proj(x))) : q_proj(x)).contiguous();
  auto kv = kv_a_proj_with_mqa(x).contiguous();  // [..., rank + rope]
  return {q, kv};
}

void MlaAttentionImpl::write_row(const float* kv_row, float* q_row, float* c_entry, float* k_entry, const float* cos,
                                 const float* sin) const {
  const int64_t rank = config_.kv_lora_rank, rope = config_.qk_rope_head_dim, nope = config_.qk_nope_head_dim;
  kernels::rms_norm_rows(kv_row, 1, rank, rank, kv_a_layernorm->weight.data_ptr<float>(), kv_a_layernorm->eps,
                         c_entry, rank);
  std::copy(kv_row + rank, kv_row + rank + rope, k_entry);
  kernels::rotate_pairs(k_entry, rope, cos, sin);
  for (int64_t h = 0; h < config_.num_attention_heads; ++h) kernels::rotate_pairs(q_row + h * (nope + rope) + nope, rope, cos, sin);
}

void MlaAttentionImpl::attend_rows(const float* q, int64_t rows, const LatentKvSlot& slot, int64_t batch_row,
                                   int64_t length, float* out, const uint8_t* tree_visibility) const {
  const int64_t heads = config_.num_attention_heads, v_dim = config_.v_head_dim;
  const int64_t q_width = heads * (config_.qk_nope_head_dim + config_.qk_rope_head_dim);
  const kernels::LatentAttentionDims dims{heads, config_.qk_nope_head_dim, config_.qk_rope_head_dim,
                                          config_.kv_lora_rank, v_dim, static_cast<float>(softmax_scale_)};
  // The kernel takes kFewRowsMax queries per call. Causally, queries [t0, t0 + c) are the last c
  // entries of the cache cut at length - rows + t0 + c; a tree's see the rows of its visibility.
  for (int64_t t0 = 0; t0 < rows; t0 += kernels::kFewRowsMax) {
    const int64_t chunk = std::min<int64_t>(kernels::kFewRowsMax, rows - t0);
    const int64_t keys = tree_visibility ? length : length - rows + t0 + chunk;
    const kernels::LatentCacheView cache{slot.c_kv.data_ptr<float>() + batch_row * slot.c_kv.stride(0),
                                         slot.c_kv.stride(1),
                                         slot.k_pe.data_ptr<float>() + batch_row * slot.k_pe.stride(0),
                                         slot.k_pe.stride(1), keys};
    kernels::KeyVisibility visibility;
    if (tree_visibility) visibility = {length - rows, tree_visibility + t0 * rows, rows};
    kernels::latent_attention(dims, q + t0 * q_width, chunk, q_width, cache, kv_b_proj->weight.data_ptr<float>(),
                              out + t0 * heads * v_dim, heads * v_dim, tree_visibility ? &visibility : nullptr);
  }
}

torch::Tensor MlaAttentionImpl::forward_cached_few_rows(const torch::Tensor& x, const RopeAngles& angles,
                                                        const LatentKvSlot& slot) {
  const int64_t batch = x.size(0), new_tokens = x.size(1), cached = slot.length;
  const int64_t heads = config_.num_attention_heads, rank = config_.kv_lora_rank, rope = config_.qk_rope_head_dim;
  const int64_t q_width = heads * (config_.qk_nope_head_dim + rope), v_dim = config_.v_head_dim;
  auto [q, kv] = project_rows(x);

  // New cache entries (normalised latent, rotated rope key) and rotated queries, row by row.
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < new_tokens; ++t) {
      const int64_t row = b * new_tokens + t;
      write_row(kv.data_ptr<float>() + row * (rank + rope), q.data_ptr<float>() + row * q_width,
                slot.c_kv.data_ptr<float>() + b * slot.c_kv.stride(0) + (cached + t) * slot.c_kv.stride(1),
                slot.k_pe.data_ptr<float>() + b * slot.k_pe.stride(0) + (cached + t) * slot.k_pe.stride(1),
                angle_row(angles.cos, b, t), angle_row(angles.sin, b, t));
    }
  }
  // A tree of new tokens: which of them each sees (slot.new_token_mask is 0 where visible).
  torch::Tensor tree_visibility;
  if (slot.new_token_mask.defined()) {
    check_new_token_mask(slot, new_tokens);
    tree_visibility = slot.new_token_mask.eq(0).to(torch::kCPU, torch::kUInt8).contiguous();
  }
  auto attended = torch::empty({batch, new_tokens, heads * v_dim}, x.options());
  for (int64_t b = 0; b < batch; ++b) {
    attend_rows(q.data_ptr<float>() + b * new_tokens * q_width, new_tokens, slot, b, cached + new_tokens,
                attended.data_ptr<float>() + b * new_tokens * heads * v_dim,
                tree_visibility.defined() ? tree_visibility.data_ptr<uint8_t>() : nullptr);
  }
  return o_proj(attended);
}

torch::Tensor MlaAttentionImpl::forward_cached_ragged(const torch::Tensor& x, const RopeAngles& angles,
                                                      const std::vector<RaggedSlot>& sequences) {
  NEXTN_CHECK(x.dim() == 3 && x.size(0) == 1, "ragged attention takes x [1, rows, hidden], got ", x.sizes());
  const int64_t total = x.size(1), rope = config_.qk_rope_head_dim;
  int64_t expected_row = 0;
  bool kernels_apply = nextn::takes_few_rows_kernels(x, kv_a_proj_with_mqa->weight, config_.hidden_size) &&
                       fits_angles(angles.cos, 1, total, rope) && fits_angles(angles.sin, 1, total, rope) &&
                       cpu_float32_rows(kv_b_proj->weight) && kv_b_proj->weight.is_contiguous() &&
                       cpu_float32_rows(kv_a_layernorm->weight);
  for (const RaggedSlot& s : sequences) {
    NEXTN_CHECK(s.first_row == expected_row && s.rows >= 1, "ragged sequences must cover the rows in order, "
                "got rows [", s.first_row, ", ", s.first_row + s.rows, ") after ", expected_row);
    NEXTN_CHECK(s.slot.length + s.rows <= s.slot.c_kv.size(1), "KV cache overflow: ", s.slot.length, " cached + ",
                s.rows, " new tokens exceed its capacity of ", s.slot.c_kv.size(1));
    expected_row += s.rows;
    kernels_apply = kernels_apply && s.rows <= kernels::kFewRowsMax &&
                    fits_cache(s.slot.c_kv, 1, config_.kv_lora_rank, s.slot.length + s.rows) &&
                    fits_cache(s.slot.k_pe, 1, rope, s.slot.length + s.rows);
  }
  NEXTN_CHECK(expected_row == total, "ragged sequences cover ", expected_row, " rows of ", total);
  if (!kernels_apply) {
    // The reference: each sequence on its own through forward_cached.
    std::vector<torch::Tensor> outs;
    for (const RaggedSlot& s : sequences) {
      RopeAngles mine{angles.cos.narrow(1, s.first_row, s.rows), angles.sin.narrow(1, s.first_row, s.rows)};
      outs.push_back(forward_cached(x.narrow(1, s.first_row, s.rows), mine, s.slot, MlaForm::kAbsorbed));
    }
    return torch::cat(outs, 1);
  }
  const int64_t heads = config_.num_attention_heads, rank = config_.kv_lora_rank, v_dim = config_.v_head_dim;
  const int64_t q_width = heads * (config_.qk_nope_head_dim + rope);
  auto [q, kv] = project_rows(x);
  auto attended = torch::empty({1, total, heads * v_dim}, x.options());
  for (const RaggedSlot& s : sequences) {
    for (int64_t t = 0; t < s.rows; ++t) {
      const int64_t row = s.first_row + t;
      write_row(kv.data_ptr<float>() + row * (rank + rope), q.data_ptr<float>() + row * q_width,
                s.slot.c_kv.data_ptr<float>() + (s.slot.length + t) * s.slot.c_kv.stride(1),
                s.slot.k_pe.data_ptr<float>() + (s.slot.length + t) * s.slot.k_pe.stride(1),
                angle_row(angles.cos, 0, row), angle_row(angles.sin, 0, row));
    }
  }
  // Sequences are independent: threads take them in turn. One sequence's attention is too small to
  // split over heads (latent_attention keeps it on one thread), so without this a batch's
  // attention ran on one core while the other waited. Each sequence is computed the same way on
  // whichever thread (nested kernel calls run inline), so its rows stay those of decoding it alone.
  const int parts = static_cast<int>(std::min<int64_t>(kernels::few_rows_matmul_threads(),
                                                       static_cast<int64_t>(sequences.size())));
  const float* q_data = q.data_ptr<float>();  // (C++17 lambdas cannot capture structured bindings)
  float* attended_data = attended.data_ptr<float>();
  std::atomic<size_t> next{0};
  kernels::run_in_parts(parts, [&](int) {
    for (size_t i = next.fetch_add(1); i < sequences.size(); i = next.fetch_add(1)) {
      const RaggedSlot& s = sequences[i];
      attend_rows(q_data + s.first_row * q_width, s.rows, s.slot, 0, s.slot.length + s.rows,
                  attended_data + s.first_row * heads * v_dim);
    }
  });
  return o_proj(attended);
}

torch::Tensor MlaAttentionImpl::forward(const torch::Tensor& x, const RopeAngles& angles) {
  auto p = project(x, angles);
  const auto& mask =
      training_mask(x.size(1), torch::TensorOptions().dtype(compute_dtype(x.scalar_type())).device(x.device()));
  return o_proj(attend_naive(p, p.c_kv, p.k_pe, mask));
}

const torch::Tensor& MlaAttentionImpl::training_mask(int64_t length, const torch::TensorOptions& options) {
  const torch::Tensor& m = training_mask_;
  if (!m.defined() || m.size(0) != length || m.scalar_type() != options.dtype().toScalarType() ||
      m.device() != options.device()) {
    training_mask_ = causal_mask(length, options);
  }
  return training_mask_;
}

}  // namespace nextn
