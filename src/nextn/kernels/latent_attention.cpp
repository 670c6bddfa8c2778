#include "nextn/kernels/latent_attention.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "nextn/kernels/few_rows_matmul.h"
#include "nextn/kernels/float_lanes.h"
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

// An empty asm that takes a product in a register keeps GCC from fusing it into the addition
// that follows (x86 targets with FMA); Clang refuses vector constraints beyond the baseline ISA.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define NEXTN_NO_CONTRACTION_BARRIER 1
#else
#define NEXTN_NO_CONTRACTION_BARRIER 0
#endif

// out[r][c] = sum_{j < terms} p[r][j] * m[j][c] for rows r < R (at most 4) and columns c < width,
// the terms added in order of j, each product rounded before it is added: element by element what
// the scalar loop `out[c] += p * m[c]` computes on this file's baseline instruction set (no FMA),
// whatever the vector width. Rows of a block share every load of m's rows (the heads of a query
// share the latent cache; its queries share a head's W_uk).
template <typename V, int R, bool kVectorRegisters>
inline void weighted_rows_block(const float* p, int64_t p_row_stride, int64_t terms, const float* m,
                                int64_t m_row_stride, int64_t width, float* out, int64_t out_row_stride) {
  constexpr int64_t kLanes = kLanesOf<V>;
  constexpr int kVectors = kVectorRegisters && sizeof(V) == 64 ? 4 : 2;  // 16 / 8 accumulators: fits AVX-512 / AVX2
  int64_t c = 0;
  for (; c + kVectors * kLanes <= width; c += kVectors * kLanes) {
    V acc[R][kVectors] = {};
    for (int64_t j = 0; j < terms; ++j) {
      V row[kVectors];
#pragma GCC unroll 4
      for (int v = 0; v < kVectors; ++v) row[v] = load_lanes<V>(m + j * m_row_stride + c + v * kLanes);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const float weight = p[r * p_row_stride + j];
#pragma GCC unroll 4
        for (int v = 0; v < kVectors; ++v) {
          V product = weight * row[v];
#if NEXTN_NO_CONTRACTION_BARRIER
          if constexpr (kVectorRegisters) __asm__("" : "+v"(product));  // no FMA contraction: see above
#endif
          acc[r][v] += product;
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int v = 0; v < kVectors; ++v) store_lanes(out + r * out_row_stride + c + v * kLanes, acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r) {  // the last columns, as the plain loop
    float* o = out + r * out_row_stride;
    for (int64_t cc = c; cc < width; ++cc) o[cc] = 0.0f;
    for (int64_t j = 0; j < terms; ++j) {
      const float weight = p[r * p_row_stride + j];
      for (int64_t cc = c; cc < width; ++cc) {
        float product = weight * m[j * m_row_stride + cc];
#if NEXTN_NO_CONTRACTION_BARRIER
        __asm__("" : "+x"(product));
#endif
        o[cc] += product;
      }
    }
  }
}

template <typename V, bool kVectorRegisters>
inline void weighted_rows_any(const float* p, int64_t rows, int64_t p_row_stride, int64_t terms, const float* m,
                              int64_t m_row_stride, int64_t width, float* out, int64_t out_row_stride) {
  for (int64_t r = 0; r < rows; r += 4) {
    const float* pr = p + r * p_row_stride;
    float* o = out + r * out_row_stride;
    switch (std::min<int64_t>(4, rows - r)) {
      case 1: weighted_rows_block<V, 1, kVectorRegisters>(pr, p_row_stride, terms, m, m_row_stride, width, o, out_row_stride); break;
      case 2: weighted_rows_block<V, 2, kVectorRegisters>(pr, p_row_stride, terms, m, m_row_stride, width, o, out_row_stride); break;
      case 3: weighted_rows_block<V, 3, kVectorRegisters>(pr, p_row_stride, terms, m, m_row_stride, width, o, out_row_stride); break;
      default: weighted_rows_block<V, 4, kVectorRegisters>(pr, p_row_stride, terms, m, m_row_stride, width, o, out_row_stride); break;
    }
  }
}

void weighted_rows_portable(const float* p, int64_t rows, int64_t p_row_stride, int64_t terms, const float* m,
                            int64_t m_row_stride, int64_t width, float* out, int64_t out_row_stride) {
  weighted_rows_any<Lanes8, false>(p, rows, p_row_stride, terms, m, m_row_stride, width, out, out_row_stride);
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((flatten, target("avx2,fma"))) void weighted_rows_avx2(const float* p, int64_t rows, int64_t p_row_stride,
                                                                   int64_t terms, const float* m, int64_t m_row_stride,
                                                                   int64_t width, float* out, int64_t out_row_stride) {
  weighted_rows_any<Lanes8, true>(p, rows, p_row_stride, terms, m, m_row_stride, width, out, out_row_stride);
}

__attribute__((flatten, target("avx512f,avx2,fma"))) void weighted_rows_avx512(
    const float* p, int64_t rows, int64_t p_row_stride, int64_t terms, const float* m, int64_t m_row_stride,
    int64_t width, float* out, int64_t out_row_stride) {
  weighted_rows_any<Lanes16, true>(p, rows, p_row_stride, terms, m, m_row_stride, width, out, out_row_stride);
}
#endif

// The entry point of few_rows_matmul's path (tests and benchmarks force one path for both).
void weighted_rows(const float* p, int64_t rows, int64_t p_row_stride, int64_t terms, const float* m,
                   int64_t m_row_stride, int64_t width, float* out, int64_t out_row_stride) {
#if defined(__x86_64__) && defined(__GNUC__)
  switch (few_rows_matmul_path()) {
    case FewRowsPath::kAvx512:
      return weighted_rows_avx512(p, rows, p_row_stride, terms, m, m_row_stride, width, out, out_row_stride);
    case FewRowsPath::kAvx2Fma:
      return weighted_rows_avx2(p, rows, p_row_stride, terms, m, m_row_stride, width, out, out_row_stride);
    case FewRowsPath::kPortable:
      break;
  }
#endif
  weighted_rows_portable(p, rows, p_row_stride, terms, m, m_row_stride, width, out, out_row_stride);
}

// A row's softmax over keys [0, end) less those a tree hides, written over its scores s as the
// weights of the latents (0 for a hidden key): keys below `shared` are seen, key j >= shared when
// tree_row[j - shared] is nonzero. s_rope (or null) is added to s first. Every key runs the same
// scalar steps whichever keys are hidden, so a path's keys give what they give causally.
void softmax_weights(float* s, const float* s_rope, int64_t end, float softmax_scale, int64_t shared,
                     const uint8_t* tree_row) {
  if (s_rope) {
    for (int64_t j = 0; j < end; ++j) s[j] += s_rope[j];
  }
  for (int64_t j = 0; j < end; ++j) s[j] *= softmax_scale;
  auto sees = [&](int64_t j) { return j < shared || tree_row[j - shared] != 0; };
  float max_score = -INFINITY;
  for (int64_t j = 0; j < shared; ++j) max_score = std::max(max_score, s[j]);
  for (int64_t j = shared; j < end; ++j) {
    if (sees(j)) max_score = std::max(max_score, s[j]);
  }
  double total = 0.0;
  for (int64_t j = 0; j < end; ++j) {
    s[j] = sees(j) ? std::exp(s[j] - max_score) : 0.0f;
    total += s[j];
  }
  const auto inverse_total = static_cast<float>(1.0 / total);
  for (int64_t j = 0; j < end; ++j) s[j] *= inverse_total;  // hidden keys stay 0
}

// Working rows of a range of heads, allocated once per part.
struct HeadScratch {
  std::vector<float> q_lat, q_pe, scores, rope_scores, latent;
};

// x [rows, cols] times w's rows, kFewRowsMax rows of x per kernel call.
void matmul_in_row_chunks(const float* x, int64_t rows, int64_t cols, const float* w, int64_t w_rows,
                          int64_t w_row_stride, float* out, int64_t out_row_stride) {
  for (int64_t first = 0; first < rows; first += kFewRowsMax) {
    const int64_t n = std::min(kFewRowsMax, rows - first);
    few_rows_matmul({x + first * cols, n, cols, cols}, {w, w_rows, cols, w_row_stride}, out + first * out_row_stride,
                    out_row_stride);
  }
}

// Heads [h_begin, h_end) for every query, together: the steps of the header's formula on rows
// t * heads + (h - h_begin), so that each key's latent and rope entries are read once for all
// these heads (MLA's heads share one latent cache). Each element is computed as for a head alone.
void attend_heads(const LatentAttentionDims& d, int64_t h_begin, int64_t h_end, const float* q, int64_t queries,
                  int64_t q_row_stride, const LatentCacheView& cache, const float* w_kvb, float* out,
                  int64_t out_row_stride, const KeyVisibility* visibility, HeadScratch& scratch) {
  const int64_t heads = h_end - h_begin, rows = queries * heads;
  const int64_t keys = cache.length, first_query = keys - queries;
  auto w_uk = [&](int64_t h) { return w_kvb + h * (d.nope + d.v_dim) * d.rank; };  // [nope, rank]
  auto w_uv = [&](int64_t h) { return w_uk(h) + d.nope * d.rank; };               // [v_dim, rank]

  // q_lat = sum_i q_nope[i] * W_uk[i]: the rows of a head's W_uk weighted by each query's q_nope.
  std::vector<float>& q_lat = scratch.q_lat;
  q_lat.resize(rows * d.rank);
  for (int64_t h = h_begin; h < h_end; ++h) {
    weighted_rows(q + h * (d.nope + d.rope), queries, q_row_stride, d.nope, w_uk(h), d.rank, d.rank,
                  q_lat.data() + (h - h_begin) * d.rank, heads * d.rank);
  }

  // Scores against every key (the causal limit is applied below), the latent and rope parts apart.
  std::vector<float>& scores = scratch.scores;
  std::vector<float>& rope_scores = scratch.rope_scores;
  scores.resize(rows * keys);
  matmul_in_row_chunks(q_lat.data(), rows, d.rank, cache.c_kv, keys, cache.c_kv_row_stride, scores.data(), keys);
  if (d.rope > 0) {
    std::vector<float>& q_pe = scratch.q_pe;
    q_pe.resize(rows * d.rope);
    for (int64_t t = 0; t < queries; ++t) {
      for (int64_t h = h_begin; h < h_end; ++h) {
        const float* from = q + t * q_row_stride + h * (d.nope + d.rope) + d.nope;
        std::copy(from, from + d.rope, q_pe.data() + (t * heads + h - h_begin) * d.rope);
      }
    }
    rope_scores.resize(rows * keys);
    matmul_in_row_chunks(q_pe.data(), rows, d.rope, cache.k_pe, keys, cache.k_pe_row_stride, rope_scores.data(), keys);
  }

  // Each row's softmax over its visible keys, left in `scores` as the weights of the latents:
  // zero for keys the row does not see (adding a zero product leaves a sum as it was).
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t t = row / heads;
    float* s = scores.data() + row * keys;
    const float* s_rope = d.rope > 0 ? rope_scores.data() + row * keys : nullptr;
    if (visibility) {
      softmax_weights(s, s_rope, keys, d.softmax_scale, visibility->shared,
                      visibility->rows + t * visibility->row_stride);
    } else {
      softmax_weights(s, s_rope, first_query + t + 1, d.softmax_scale, first_query + t + 1, nullptr);  // causal
      std::fill(s + first_query + t + 1, s + keys, 0.0f);
    }
  }

  // The weighted sum of the latents, each key's entry read once for all rows.
  std::vector<float>& latent = scratch.latent;
  latent.resize(rows * d.rank);
  weighted_rows(scores.data(), rows, keys, keys, cache.c_kv, cache.c_kv_row_stride, d.rank, latent.data(), d.rank);

  // out[t] = W_uv latent[t]: W_uv's rows are this head's outputs.
  for (int64_t h = h_begin; h < h_end; ++h) {
    few_rows_matmul({latent.data() + (h - h_begin) * d.rank, queries, d.rank, heads * d.rank},
                    {w_uv(h), d.v_dim, d.rank, d.rank}, out + h * d.v_dim, out_row_stride);
  }
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
    attend_heads(dims, begin, end, q, queries, q_row_stride, cache, w_kvb, out, out_row_stride, visibility, scratch);
  });
}

}  // namespace nextn::kernels
