// The absorbed-form attention kernel against attention computed the long way in double: per head,
// keys and values expanded from the latents (k = W_uk c, v = W_uv c), causal softmax, weighted sum
// of values. Also: a query's result is bit-identical whether it comes alone or with others (a
// verify reproduces plain decoding), and whatever the thread count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

#include "nextn/kernels/few_rows_matmul.h"
#include "nextn/kernels/latent_attention.h"

namespace nextn::kernels {
namespace {

struct Problem {
  LatentAttentionDims dims;
  int64_t keys = 0, queries = 0;
  int64_t q_stride = 0, c_stride = 0, k_stride = 0;
  std::vector<float> q, c_kv, k_pe, w_kvb;

  LatentCacheView cache(int64_t length) const {
    return {c_kv.data(), c_stride, k_pe.data(), k_stride, length};
  }
};

Problem random_problem(int64_t heads, int64_t keys, int64_t queries, std::mt19937& rng, int64_t rope = 4) {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  Problem p;
  p.dims = {heads, 8, rope, 12, 6, 0.35f};
  p.keys = keys;
  p.queries = queries;
  const auto& d = p.dims;
  p.q_stride = heads * (d.nope + d.rope) + 3;  // padded rows: strides are honoured
  p.c_stride = d.rank + 5;
  p.k_stride = d.rope + 1;
  auto fill = [&](std::vector<float>& v, int64_t n) {
    v.resize(n);
    for (auto& x : v) x = uniform(rng);
  };
  fill(p.q, queries * p.q_stride);
  fill(p.c_kv, keys * p.c_stride);
  fill(p.k_pe, keys * p.k_stride);
  fill(p.w_kvb, heads * (d.nope + d.v_dim) * d.rank);
  return p;
}

// out[t][h * v + j], computed with per-head keys and values, in double.
std::vector<double> expanded_attention(const Problem& p) {
  const auto& d = p.dims;
  std::vector<double> out(p.queries * d.heads * d.v_dim);
  for (int64_t t = 0; t < p.queries; ++t) {
    const int64_t visible = p.keys - p.queries + t + 1;
    for (int64_t h = 0; h < d.heads; ++h) {
      const float* q_nope = p.q.data() + t * p.q_stride + h * (d.nope + d.rope);
      const float* q_pe = q_nope + d.nope;
      auto w = [&](int64_t row, int64_t r) { return p.w_kvb[(h * (d.nope + d.v_dim) + row) * d.rank + r]; };
      std::vector<double> scores(visible);
      for (int64_t s = 0; s < visible; ++s) {
        const float* c = p.c_kv.data() + s * p.c_stride;
        double score = 0;
        for (int64_t i = 0; i < d.nope; ++i) {
          double key = 0;
          for (int64_t r = 0; r < d.rank; ++r) key += w(i, r) * c[r];
          score += q_nope[i] * key;
        }
        for (int64_t i = 0; i < d.rope; ++i) score += q_pe[i] * p.k_pe[s * p.k_stride + i];
        scores[s] = score * d.softmax_scale;
      }
      double max_score = -INFINITY, total = 0;
      for (double s : scores) max_score = std::max(max_score, s);
      for (double& s : scores) total += (s = std::exp(s - max_score));
      for (int64_t j = 0; j < d.v_dim; ++j) {
        double value_sum = 0;
        for (int64_t s = 0; s < visible; ++s) {
          double value = 0;
          for (int64_t r = 0; r < d.rank; ++r) value += w(d.nope + j, r) * p.c_kv[s * p.c_stride + r];
          value_sum += scores[s] / total * value;
        }
        out[(t * d.heads + h) * d.v_dim + j] = value_sum;
      }
    }
  }
  return out;
}

std::vector<float> run_kernel(const Problem& p, int64_t out_stride) {
  std::vector<float> out(p.queries * out_stride, NAN);
  latent_attention(p.dims, p.q.data(), p.queries, p.q_stride, p.cache(p.keys), p.w_kvb.data(), out.data(), out_stride);
  return out;
}

TEST(LatentAttention, MatchesAttentionWithExpandedKeysAndValues) {
  std::mt19937 rng(11);
  for (int64_t queries = 1; queries <= kFewRowsMax; ++queries) {
    for (int64_t keys : {queries, queries + 1, int64_t{40}}) {
      Problem p = random_problem(3, keys, queries, rng, keys == 40 ? 0 : 4);  // with and without a rope part
      const int64_t width = p.dims.heads * p.dims.v_dim, out_stride = width + 2;
      auto out = run_kernel(p, out_stride);
      auto expected = expanded_attention(p);
      for (int64_t t = 0; t < queries; ++t) {
        for (int64_t i = 0; i < width; ++i) {
          EXPECT_NEAR(out[t * out_stride + i], expected[t * width + i], 2e-5)
              << "queries " << queries << " keys " << keys << " t " << t << " i " << i;
        }
        EXPECT_TRUE(std::isnan(out[t * out_stride + width])) << "wrote past the row";
      }
    }
  }
}

TEST(LatentAttention, QueryAloneEqualsTheSameQueryAmongOthers) {
  const FewRowsPath path_before = few_rows_matmul_path();
  std::mt19937 rng(12);
  Problem p = random_problem(4, 30, 4, rng);
  const int64_t width = p.dims.heads * p.dims.v_dim;
  for (FewRowsPath path : {FewRowsPath::kPortable, FewRowsPath::kAvx2Fma, FewRowsPath::kAvx512}) {
    if (!few_rows_matmul_path_available(path)) continue;
    force_few_rows_matmul_path(path);
    auto together = run_kernel(p, width);
    for (int64_t t = 0; t < p.queries; ++t) {
      // Query t alone is the last entry of a cache that ends at its own position.
      std::vector<float> alone(width);
      latent_attention(p.dims, p.q.data() + t * p.q_stride, 1, p.q_stride, p.cache(p.keys - p.queries + t + 1),
                       p.w_kvb.data(), alone.data(), width);
      for (int64_t i = 0; i < width; ++i) {
        ASSERT_EQ(alone[i], together[t * width + i]) << few_rows_matmul_path_name(path) << " query " << t << " i " << i;
      }
    }
  }
  force_few_rows_matmul_path(path_before);
}

// A tree of new entries (KeyVisibility): each query sees the shared keys and the new keys its row
// marks, and gives bit for bit what it gives causally over a cache holding only those keys, in
// order (a tree's path is verified as plain decoding would compute it).
TEST(LatentAttention, TreeVisibilityEqualsTheCausalQueryOverItsPath) {
  std::mt19937 rng(14);
  const int64_t shared = 20, tree = 6;
  // Tree rows: 0 root; 1, 2 its children; 3, 4 children of 1; 5 child of 2 (parents first).
  const std::vector<std::vector<int64_t>> paths{{0}, {0, 1}, {0, 2}, {0, 1, 3}, {0, 1, 4}, {0, 2, 5}};
  Problem p = random_problem(3, shared + tree, tree, rng);
  std::vector<uint8_t> rows(tree * tree, 0);
  for (int64_t t = 0; t < tree; ++t) {
    for (int64_t u : paths[t]) rows[t * tree + u] = 1;
  }
  const int64_t width = p.dims.heads * p.dims.v_dim;
  const KeyVisibility visibility{shared, rows.data(), tree};
  std::vector<float> out(tree * width);
  latent_attention(p.dims, p.q.data(), tree, p.q_stride, p.cache(shared + tree), p.w_kvb.data(), out.data(), width,
                   &visibility);
  for (int64_t t = 0; t < tree; ++t) {
    // The shared keys, then the path's entries copied after them: query t causally at the end.
    Problem path = p;
    for (size_t i = 0; i < paths[t].size(); ++i) {
      const int64_t from = shared + paths[t][i], to = shared + static_cast<int64_t>(i);
      std::copy_n(p.c_kv.begin() + from * p.c_stride, p.c_stride, path.c_kv.begin() + to * p.c_stride);
      std::copy_n(p.k_pe.begin() + from * p.k_stride, p.k_stride, path.k_pe.begin() + to * p.k_stride);
    }
    std::vector<float> alone(width);
    latent_attention(p.dims, p.q.data() + t * p.q_stride, 1, p.q_stride,
                     path.cache(shared + static_cast<int64_t>(paths[t].size())), p.w_kvb.data(), alone.data(), width);
    for (int64_t i = 0; i < width; ++i) ASSERT_EQ(out[t * width + i], alone[i]) << "query " << t << " i " << i;
  }
  const KeyVisibility bad{shared + tree + 1, rows.data(), tree};
  EXPECT_THROW(latent_attention(p.dims, p.q.data(), tree, p.q_stride, p.cache(shared + tree), p.w_kvb.data(),
                                out.data(), width, &bad),
               std::invalid_argument);
}

#if defined(__x86_64__)
// The kernel before heads were computed together, one head at a time as scalar loops (each
// product rounded before it is added: x86-64's baseline has no FMA to fuse them), its products
// through the few-rows kernel. The kernel must give these bits on every code path: the heads'
// rows share loads, not arithmetic.
std::vector<float> attention_head_by_head(const Problem& p, int64_t keys, const KeyVisibility* visibility) {
  const auto& d = p.dims;
  const int64_t width = d.heads * d.v_dim, first_query = keys - p.queries;
  std::vector<float> out(p.queries * width);
  for (int64_t h = 0; h < d.heads; ++h) {
    const float* w_uk = p.w_kvb.data() + h * (d.nope + d.v_dim) * d.rank;
    const float* w_uv = w_uk + d.nope * d.rank;
    std::vector<float> q_lat(p.queries * d.rank, 0.0f), scores(p.queries * keys), rope(p.queries * keys);
    std::vector<float> latent(p.queries * d.rank, 0.0f);
    for (int64_t t = 0; t < p.queries; ++t) {
      const float* q_nope = p.q.data() + t * p.q_stride + h * (d.nope + d.rope);
      for (int64_t i = 0; i < d.nope; ++i) {
        for (int64_t r = 0; r < d.rank; ++r) q_lat[t * d.rank + r] += q_nope[i] * w_uk[i * d.rank + r];
      }
    }
    few_rows_matmul({q_lat.data(), p.queries, d.rank, d.rank}, {p.c_kv.data(), keys, d.rank, p.c_stride},
                    scores.data(), keys);
    few_rows_matmul({p.q.data() + h * (d.nope + d.rope) + d.nope, p.queries, d.rope, p.q_stride},
                    {p.k_pe.data(), keys, d.rope, p.k_stride}, rope.data(), keys);
    for (int64_t t = 0; t < p.queries; ++t) {
      const int64_t end = visibility ? keys : first_query + t + 1;
      auto sees = [&](int64_t j) {
        return !visibility || j < visibility->shared ||
               visibility->rows[t * visibility->row_stride + j - visibility->shared] != 0;
      };
      float* s = scores.data() + t * keys;
      float max_score = -INFINITY;
      for (int64_t j = 0; j < end; ++j) {
        s[j] = (s[j] + rope[t * keys + j]) * d.softmax_scale;
        if (sees(j)) max_score = std::max(max_score, s[j]);
      }
      double total = 0;
      for (int64_t j = 0; j < end; ++j) total += (s[j] = sees(j) ? std::exp(s[j] - max_score) : 0.0f);
      const auto inverse_total = static_cast<float>(1.0 / total);
      for (int64_t j = 0; j < end; ++j) {
        if (!sees(j)) continue;
        const float weight = s[j] * inverse_total;
        for (int64_t r = 0; r < d.rank; ++r) latent[t * d.rank + r] += weight * p.c_kv[j * p.c_stride + r];
      }
    }
    few_rows_matmul({latent.data(), p.queries, d.rank, d.rank}, {w_uv, d.v_dim, d.rank, d.rank},
                    out.data() + h * d.v_dim, width);
  }
  return out;
}

TEST(LatentAttention, HeadsTogetherGiveTheBitsOfEachHeadAlone) {
  const FewRowsPath path_before = few_rows_matmul_path();
  std::mt19937 rng(15);
  // rank 70: a block of vectors and a remainder column loop on every path; 5 heads: a block of
  // four rows and one of one.
  Problem p = random_problem(5, 40, 6, rng);
  p.dims.rank = 70;
  p.c_stride = 73;
  p.c_kv.resize(p.keys * p.c_stride);
  for (auto& x : p.c_kv) x = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
  p.w_kvb.resize(p.dims.heads * (p.dims.nope + p.dims.v_dim) * p.dims.rank);
  for (auto& x : p.w_kvb) x = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
  std::vector<uint8_t> tree_rows(p.queries * p.queries, 0);
  for (int64_t t = 0; t < p.queries; ++t) {
    tree_rows[t * p.queries + t] = 1;
    if (t > 0) tree_rows[t * p.queries + (t - 1) / 2] = 1;  // a binary tree: parent (t - 1) / 2
  }
  const KeyVisibility tree{p.keys - p.queries, tree_rows.data(), p.queries};
  const int64_t width = p.dims.heads * p.dims.v_dim;
  for (FewRowsPath path : {FewRowsPath::kPortable, FewRowsPath::kAvx2Fma, FewRowsPath::kAvx512}) {
    if (!few_rows_matmul_path_available(path)) continue;
    force_few_rows_matmul_path(path);
    for (const KeyVisibility* visibility : {static_cast<const KeyVisibility*>(nullptr), &tree}) {
      std::vector<float> out(p.queries * width);
      latent_attention(p.dims, p.q.data(), p.queries, p.q_stride, p.cache(p.keys), p.w_kvb.data(), out.data(), width,
                       visibility);
      const auto expected = attention_head_by_head(p, p.keys, visibility);
      for (size_t i = 0; i < out.size(); ++i) {
        ASSERT_EQ(out[i], expected[i]) << few_rows_matmul_path_name(path) << (visibility ? " tree" : " causal")
                                       << " element " << i;
      }
    }
  }
  force_few_rows_matmul_path(path_before);
}
#endif

TEST(LatentAttention, ThreadCountDoesNotChangeTheResult) {
  const int threads_before = few_rows_matmul_threads();
  std::mt19937 rng(13);
  Problem p = random_problem(16, 2000, 2, rng);  // enough work for several parts
  const int64_t width = p.dims.heads * p.dims.v_dim;
  set_few_rows_matmul_threads(1);
  auto one = run_kernel(p, width);
  set_few_rows_matmul_threads(3);
  auto three = run_kernel(p, width);
  set_few_rows_matmul_threads(threads_before);
  EXPECT_EQ(one, three);
}

TEST(LatentAttention, RejectsQueriesItCannotPlace) {
  std::mt19937 rng(14);
  Problem p = random_problem(2, 3, 1, rng);
  std::vector<float> out(100);
  EXPECT_THROW(latent_attention(p.dims, p.q.data(), kFewRowsMax + 1, p.q_stride, p.cache(10), p.w_kvb.data(),
                                out.data(), 12),
               std::invalid_argument);
  EXPECT_THROW(latent_attention(p.dims, p.q.data(), 2, p.q_stride, p.cache(1), p.w_kvb.data(), out.data(), 12),
               std::invalid_argument);
  EXPECT_THROW(latent_attention(p.dims, p.q.data(), 1, 5, p.cache(3), p.w_kvb.data(), out.data(), 12),
               std::invalid_argument);  // q rows shorter than heads * (nope + rope)
  EXPECT_THROW(latent_attention(p.dims, p.q.data(), 1, p.q_stride, p.cache(3), p.w_kvb.data(), out.data(), 11),
               std::invalid_argument);  // out rows shorter than heads * v_dim
  EXPECT_THROW(latent_attention(p.dims, p.q.data(), 1, p.q_stride, p.cache(3), nullptr, out.data(), 12),
               std::invalid_argument);
  auto odd_rope = p.dims;
  odd_rope.rope = 3;
  EXPECT_THROW(latent_attention(odd_rope, p.q.data(), 1, p.q_stride, p.cache(3), p.w_kvb.data(), out.data(), 12),
               std::invalid_argument);
}

}  // namespace
}  // namespace nextn::kernels
