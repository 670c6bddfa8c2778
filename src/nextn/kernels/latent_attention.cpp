#include "nextn/kernels/latent_attention.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "nextn/kernels/few_rows_matmul.h"
#include "nextn/kernels/worker_pool.h"

namespace nextn::kernels {
namespace {

// Below this many multiply-adds per call the heads run on the calling thread: a helper's start
// costs more than it saves.
constexpr int64_t kMinWorkPerPart = 200000;

void check_dims(const LatentAttentionDims& d, const float* q, int64_t queries, int64_t q_row_stride,
                const LatentCacheView& cache, const float* w_kvb, const float* out, int64_t out_row_stride,
                const KeyVisibility* visibility) {
  if (d.heads < 1 || d.nope < 1 || d.rope < 0 || d.rank < 1 || d.v_dim < 1 || d.rope % 2 != 0) {
    throw std::invalid_argument("latent_attention: bad head dimensions");
  }
  if (q == nullptr || w_kvb == nullptr || out == nullptr || cache.c_kv == nullptr ||
      (d.rope > 0 && cache.k_pe == nullptr)) {
    throw std::invalid_argument("latent_attention: null data");
  }
  if (q_row_stride < d.heads * (d.nope + d.rope) || out_row_stride < d.heads * d.v_dim ||
      cache.c_kv_row_stride < d.rank || cache.k_pe_row_stride < d.rope) {
    throw std::invalid_argument("latent_attention: a row stride shorter than its row");
  }
  if (queries < 1 || queries > kFewRowsMax || (!visibility && queries > cache.length)) {
    throw std::invalid_argument("latent_attention: needs 1.." + std::to_string(kFewRowsMax) +
                                " queries, all of them in the cache");
  }
  if (visibility && (visibility->rows == nullptr || visibility->shared < 0 || visibility->shared > cache.length ||
                     visibility->row_stride < cache.length - visibility->shared)) {
    throw std::invalid_argument("latent_attention: bad key visibility");
  }
}

// Working rows of one head, allocated once per part and reused for each of its heads.
struct HeadScratch {
  std::vector<float> q_lat, scores, rope_scores, latent;
};

// One head for every query: the steps of the header's formula, each query over its visible keys.
void attend_one_head(const LatentAttentionDims& d, int64_t h, const float* q, int64_t queries, int64_t q_row_stride,
                     const LatentCacheView& cache, const float* w_kvb, float* out, int64_t out_row_stride,
                     const KeyVisibility* visibility, HeadScratch& scratch) {
  const int64_t keys = cache.length, first_query = keys - queries;
  const float* w_uk = w_kvb + h * (d.nope + d.v_dim) * d.rank;  // [nope, rank]
  const float* w_uv = w_uk + d.nope * d.rank;                    // [v_dim, rank]

  // q_lat[t] = sum_i q_nope[t][i] * W_uk[i]: rows of W_uk added up, so the inner loop runs along rank.
  std::vector<float>& q_lat = scratch.q_lat;
  q_lat.assign(queries * d.rank, 0.0f);
  for (int64_t t = 0; t < queries; ++t) {
    const float* q_nope = q + t * q_row_stride + h * (d.nope + d.rope);
    float* lat = q_lat.data() + t * d.rank;
    for (int64_t i = 0; i < d.nope; ++i) {
      const float qi = q_nope[i];
      const float* w_row = w_uk + i * d.rank;
      for (int64_t r = 0; r < d.rank; ++r) lat[r] += qi * w_row[r];
    }
  }

  // Scores against every key (the causal limit is applied below), the latent and rope parts apart.
  std::vector<float>& scores = scratch.scores;
  std::vector<float>& rope_scores = scratch.rope_scores;
  scores.resize(queries * keys);
  rope_scores.resize(d.rope > 0 ? queries * keys : 0);
  few_rows_matmul({q_lat.data(), queries, d.rank, d.rank}, {cache.c_kv, keys, d.rank, cache.c_kv_row_stride},
                  scores.data(), keys);
  if (d.rope > 0) {
    few_rows_matmul({q + h * (d.nope + d.rope) + d.nope, queries, d.rope, q_row_stride},
                    {cache.k_pe, keys, d.rope, cache.k_pe_row_stride}, rope_scores.data(), keys);
  }

  // Softmax over the visible keys, and the weighted sum of their latents.
  std::vector<float>& latent = scratch.latent;
  latent.assign(queries * d.rank, 0.0f);
  for (int64_t t = 0; t < queries; ++t) {
    // Keys [0, end) less those a tree hides (sees(j)); causal: [0, first_query + t].
    const int64_t end = visibility ? keys : first_query + t + 1;
    const uint8_t* tree_row = visibility ? visibility->rows + t * visibility->row_stride : nullptr;
    const int64_t shared = visibility ? visibility->shared : end;
    auto sees = [&](int64_t j) { return j < shared || tree_row[j - shared] != 0; };
    float* s = scores.data() + t * keys;
    if (d.rope > 0) {
      const float* s_rope = rope_scores.data() + t * keys;
      for (int64_t j = 0; j < end; ++j) s[j] += s_rope[j];
    }
    float max_score = -INFINITY;
    for (int64_t j = 0; j < end; ++j) {
      s[j] *= d.softmax_scale;
      if (sees(j)) max_score = std::max(max_score, s[j]);
    }
    double total = 0.0;
    for (int64_t j = 0; j < end; ++j) {
      s[j] = sees(j) ? std::exp(s[j] - max_score) : 0.0f;
      total += s[j];
    }
    const auto inverse_total = static_cast<float>(1.0 / total);
    float* lat = latent.data() + t * d.rank;
    for (int64_t j = 0; j < end; ++j) {
      if (!sees(j)) continue;
      const float p = s[j] * inverse_total;
      const float* c = cache.c_kv + j * cache.c_kv_row_stride;
      for (int64_t r = 0; r < d.rank; ++r) lat[r] += p * c[r];
    }
  }

  // out[t] = W_uv latent[t]: W_uv's rows are this head's outputs.
  few_rows_matmul({latent.data(), queries, d.rank, d.rank}, {w_uv, d.v_dim, d.rank, d.rank}, out + h * d.v_dim,
                  out_row_stride);
}

}  // namespace

void latent_attention(const LatentAttentionDims& dims, const float* q, int64_t queries, int64_t q_row_stride,
                      const LatentCacheView& cache, const float* w_kvb, float* out, int64_t out_row_stride,
                      const KeyVisibility* visibility) {
  check_dims(dims, q, queries, q_row_stride, cache, w_kvb, out, out_row_stride, visibility);
  const int64_t work_per_head = queries * (dims.nope * dims.rank + cache.length * (2 * dims.rank + dims.rope) +
                                           dims.v_dim * dims.rank);
  const int64_t worth = std::max<int64_t>(1, dims.heads * work_per_head / kMinWorkPerPart);
  const int parts = static_cast<int>(std::min<int64_t>({few_rows_matmul_threads(), worth, dims.heads}));
  // Heads are independent; each part takes a contiguous range of them (the few-rows products it
  // calls then run on its own thread: nested calls run inline).
  run_in_parts(parts, [&](int part) {
    const int64_t begin = dims.heads * part / parts, end = dims.heads * (part + 1) / parts;
    HeadScratch scratch;
    for (int64_t h = begin; h < end; ++h) {
      attend_one_head(dims, h, q, queries, q_row_stride, cache, w_kvb, out, out_row_stride, visibility, scratch);
    }
  });
}

}  // namespace nextn::kernels
