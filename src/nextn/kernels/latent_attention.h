// MLA attention of decoding's few new tokens over a latent KV cache, in the absorbed form
// (DeepSeek-V2 section 2.1.2), as plain loops and few-rows products on raw float32 rows.
//
// Per head h, with W_kvb's rows for h split into W_uk [nope, rank] and W_uv [v, rank]:
//   q_lat  = W_uk^T q_nope                                  the query in the latent space
//   s_j    = (q_lat . c_j + q_pe . kpe_j) * softmax_scale     for the keys j the query may see
//   out    = W_uv sum_j softmax(s)_j c_j
// which is what MlaAttentionImpl::attend_absorbed computes with ~40 libtorch operators per layer
// (~70 us per layer and token on `small`, against a few us here). The heads of a query are
// computed together (MLA's heads share one latent cache: each entry is read once for all), each
// element with the same scalar steps as a head alone.
#pragma once

#include <cstdint>

namespace nextn::kernels {

struct LatentAttentionDims {
  int64_t heads = 0;
  int64_t nope = 0;   // qk_nope_head_dim
  int64_t rope = 0;   // qk_rope_head_dim
  int64_t rank = 0;   // kv_lora_rank
  int64_t v_dim = 0;  // v_head_dim
  float softmax_scale = 1.0f;
};

// One sequence's cache: entry j holds c_kv (rank floats) at c_kv + j * c_kv_row_stride and the
// rotated rope key (rope floats) at k_pe + j * k_pe_row_stride, for j < length.
struct LatentCacheView {
  const float* c_kv = nullptr;
  int64_t c_kv_row_stride = 0;
  const float* k_pe = nullptr;
  int64_t k_pe_row_stride = 0;
  int64_t length = 0;
};

// The queries are the cache's last `queries` entries (1 <= queries <= kFewRowsMax, already
// written to it): query t sees entries [0, length - queries + t], causal among the new tokens.
// Query t's head h reads q_nope at q + t * q_row_stride + h * (nope + rope) and the rotated q_pe
// right after it (the layout of q_proj's output). w_kvb is kv_b_proj's weight,
// [heads * (nope + v_dim), rank] row-major. Writes head h of query t to
// out + t * out_row_stride + h * v_dim. Each query's result does not depend on how many queries
// come with it, nor on the thread count: a speculative verify reproduces plain decoding's rows.
// Throws std::invalid_argument on bad head dimensions or query counts, null data, or a row stride
// shorter than its row.
//
// With `visibility` (a tree of drafts, whose tokens see their ancestors rather than every earlier
// token): query t sees keys [0, visibility->shared) and key shared + u where
// visibility->rows[t * row_stride + u] is nonzero; the queries need not be the last entries. The
// keys a query sees are summed in cache order, so a path's query gives what the same query gives
// causally over a cache that holds only that path.
struct KeyVisibility {
  int64_t shared = 0;             // keys every query sees (the cache before the tree)
  const uint8_t* rows = nullptr;  // [queries, length - shared], row-major
  int64_t row_stride = 0;
};
void latent_attention(const LatentAttentionDims& dims, const float* q, int64_t queries, int64_t q_row_stride,
                      const LatentCacheView& cache, const float* w_kvb, float* out, int64_t out_row_stride,
                      const KeyVisibility* visibility = nullptr);

}  // namespace nextn::kernels
