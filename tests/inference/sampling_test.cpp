// Sampling: the distribution after temperature / top-k / top-p against a direct computation,
// seeds, and the frequencies of drawn tokens.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "nextn/inference/sampling.h"
#include "nextn/util/error.h"
#include "test_support.h"

namespace nextn::inference {
namespace {

// Straight from the definitions, one scalar at a time.
std::vector<double> direct_distribution(const std::vector<double>& logits, double temperature, int64_t top_k,
                                        double top_p) {
  const size_t v = logits.size();
  std::vector<double> x(v);
  for (size_t i = 0; i < v; ++i) x[i] = logits[i] / temperature;
  std::vector<bool> keep(v, true);
  if (top_k > 0 && static_cast<size_t>(top_k) < v) {
    std::vector<double> sorted = x;
    std::sort(sorted.rbegin(), sorted.rend());
    const double kth = sorted[top_k - 1];
    for (size_t i = 0; i < v; ++i) keep[i] = x[i] >= kth;
  }
  double top = -INFINITY;
  for (size_t i = 0; i < v; ++i) if (keep[i]) top = std::max(top, x[i]);
  std::vector<double> p(v, 0.0);
  double z = 0;
  for (size_t i = 0; i < v; ++i) if (keep[i]) z += (p[i] = std::exp(x[i] - top));
  for (double& value : p) value /= z;
  if (top_p < 1.0) {
    std::vector<size_t> order(v);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
    double mass = 0;
    std::vector<double> kept(v, 0.0);
    for (size_t i : order) {
      if (mass >= top_p) break;  // the smallest prefix whose mass reaches top_p
      kept[i] = p[i];
      mass += p[i];
    }
    for (double& value : kept) value /= mass;
    p = kept;
  }
  return p;
}

TEST(Sampling, DistributionMatchesADirectComputation) {
  torch::manual_seed(41);
  auto logits = torch::randn({3, 17}, torch::kDouble) * 2.0;
  struct Case {
    double temperature;
    int64_t top_k;
    double top_p;
  };
  for (Case c : {Case{1.0, 0, 1.0}, Case{0.7, 0, 1.0}, Case{1.5, 5, 1.0}, Case{1.0, 0, 0.8}, Case{0.8, 6, 0.7},
                 Case{1.0, 1, 1.0}, Case{1.0, 0, 0.05}, Case{2.0, 17, 0.999}}) {
    SamplingOptions options;
    options.temperature = c.temperature;
    options.top_k = c.top_k;
    options.top_p = c.top_p;
    auto probs = sampling_distribution(logits, options);
    for (int64_t row = 0; row < 3; ++row) {
      std::vector<double> l(logits[row].data_ptr<double>(), logits[row].data_ptr<double>() + 17);
      auto expected = direct_distribution(l, c.temperature, c.top_k, c.top_p);
      for (int64_t i = 0; i < 17; ++i) {
        EXPECT_NEAR(probs[row][i].item<double>(), expected[i], 1e-12)
            << "T=" << c.temperature << " k=" << c.top_k << " p=" << c.top_p << " row " << row << " token " << i;
      }
    }
  }
}

TEST(Sampling, TopPKeepsTheSmallestSetReachingP) {
  SamplingOptions options;
  options.top_p = 0.6;
  // Probabilities 0.5, 0.3, 0.2: 0.5 alone does not reach 0.6, 0.5 + 0.3 does.
  auto logits = torch::tensor({std::log(0.5), std::log(0.3), std::log(0.2)}, torch::kDouble);
  auto probs = sampling_distribution(logits, options);
  EXPECT_NEAR(probs[0].item<double>(), 0.5 / 0.8, 1e-12);
  EXPECT_NEAR(probs[1].item<double>(), 0.3 / 0.8, 1e-12);
  EXPECT_EQ(probs[2].item<double>(), 0.0);
}

TEST(Sampling, GreedyIsOneHotAtTheArgmax) {
  SamplingOptions options;
  options.temperature = 0;
  auto logits = torch::tensor({0.1, 2.0, -1.0, 2.0 - 1e-9});
  auto probs = sampling_distribution(logits, options);
  EXPECT_EQ(probs[1].item<float>(), 1.0f);
  EXPECT_EQ(probs.sum().item<float>(), 1.0f);
  Sampler sampler(options);
  EXPECT_EQ(sampler.next_token(logits), 1);
}

// A temperature so small that logits / T overflows float32 (about 1e-38 here) is argmax's
// one-hot, not NaN probabilities (which drew token 0 whatever the logits).
TEST(Sampling, TinyTemperaturesAreOneHotAtTheArgmax) {
  auto logits = torch::tensor({0.5f, 3.0f, -2.0f, 1.0f});
  for (double t : {1e-10, 1e-38, 1e-40, 4.9e-324}) {
    SamplingOptions options;
    options.temperature = t;
    auto probs = sampling_distribution(logits, options);
    EXPECT_EQ(probs[1].item<float>(), 1.0f) << t;
    EXPECT_EQ(probs.sum().item<float>(), 1.0f) << t;
    options.seed = 7;
    Sampler sampler(options);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(sampler.next_token(logits), 1) << t;
  }
}

// A scan written out: the first index holding the largest value, a NaN counting as largest.
int64_t scanned_argmax(const torch::Tensor& row) {
  auto values = row.to(torch::kDouble).contiguous();
  const double* v = values.data_ptr<double>();
  int64_t best = 0;
  for (int64_t i = 0; i < values.numel(); ++i) {
    if (std::isnan(v[i])) return i;
    if (v[i] > v[best]) best = i;
  }
  return best;
}

TEST(Sampling, GreedyTokensAreTheFirstLargestOfEachRow) {
  torch::manual_seed(61);
  for (int64_t vocab : {1, 15, 16, 17, 8192}) {
    for (auto dtype : {torch::kFloat, torch::kDouble}) {
      auto logits = torch::randn({3, vocab}, dtype);
      if (vocab >= 17) {
        logits[1].fill_(0.0);
        logits[1][5] = 2.0;
        logits[1][vocab - 1] = 2.0;  // a tie: the first wins
        logits[2][vocab / 2] = std::nan("");
      }
      auto tokens = greedy_tokens(logits);
      ASSERT_EQ(tokens.size(), 3u);
      for (int64_t r = 0; r < 3; ++r) EXPECT_EQ(tokens[r], scanned_argmax(logits[r])) << vocab << " row " << r;
      if (vocab >= 17) {
        EXPECT_EQ(tokens[1], 5);
        EXPECT_EQ(tokens[2], vocab / 2);
      }
      EXPECT_EQ(greedy_tokens(logits[0])[0], tokens[0]);  // one row [V]
      // A strided row (a column of the transpose) takes the libtorch path: the same answer.
      EXPECT_EQ(greedy_tokens(logits.t().contiguous().t())[0], tokens[0]);
    }
  }
  // A NaN in the tail past the last 16 lanes, and a row of -inf (index 0, as torch has it).
  auto tail = torch::zeros({2, 37});
  tail[0][36] = std::nan("");
  tail[0][3] = 1.0;
  tail[1].fill_(-std::numeric_limits<float>::infinity());
  EXPECT_EQ(greedy_tokens(tail), (std::vector<int64_t>{36, 0}));
  EXPECT_EQ(greedy_tokens(tail), (std::vector<int64_t>{tail[0].argmax().item<int64_t>(), tail[1].argmax().item<int64_t>()}));
  EXPECT_THROW(greedy_tokens(torch::zeros({2, 2, 2})), Error);
}

TEST(Sampling, SameSeedSameTokensOtherSeedOtherTokens) {
  torch::manual_seed(42);
  auto logits = torch::randn({64});
  SamplingOptions options;
  options.seed = 7;
  Sampler a(options), b(options);
  options.seed = 8;
  Sampler c(options);
  std::vector<int64_t> ta, tb, tc;
  for (int i = 0; i < 50; ++i) {
    torch::manual_seed(1000 + i);  // global state must not matter
    ta.push_back(a.next_token(logits));
    tb.push_back(b.next_token(logits));
    tc.push_back(c.next_token(logits));
  }
  EXPECT_EQ(ta, tb);
  EXPECT_NE(ta, tc);
}

TEST(Sampling, UniformsAreFixedByTheSeed) {
  SamplingOptions options;
  options.seed = 123;
  Sampler sampler(options);
  // std::mt19937_64's output is fixed by the C++ standard ([rand.predef]: the 10000th value from
  // the default seed is 9981545732273789042), so these uniforms are the same on every platform.
  std::mt19937_64 standard;
  standard.discard(9999);
  EXPECT_EQ(standard(), 9981545732273789042ULL);
  std::mt19937_64 reference(123);
  for (int i = 0; i < 5; ++i) {
    double expected = static_cast<double>(reference() >> 11) * 0x1.0p-53;
    EXPECT_EQ(sampler.uniform(), expected);
  }
}

TEST(Sampling, DrawFrequenciesFollowTheDistribution) {
  SamplingOptions options;
  options.seed = 3;
  Sampler sampler(options);
  auto probs = torch::tensor({0.1, 0.0, 0.6, 0.3, 0.0}, torch::kDouble);
  std::vector<int64_t> counts(5, 0);
  const int draws = 20000;
  // Row-wise sampling too: a [B, V] batch draws one token per row.
  for (int i = 0; i < draws / 4; ++i) {
    auto tokens = sampler.sample(probs.unsqueeze(0).expand({4, 5}));
    for (int64_t r = 0; r < 4; ++r) counts[tokens[r].item<int64_t>()] += 1;
  }
  EXPECT_EQ(counts[1], 0);
  EXPECT_EQ(counts[4], 0);
  for (int64_t i : {0, 2, 3}) {
    double p = probs[i].item<double>();
    double sd = std::sqrt(draws * p * (1 - p));
    EXPECT_NEAR(counts[i], draws * p, 5 * sd) << "token " << i;
  }
}

TEST(Sampling, BadOptionsAreErrors) {
  SamplingOptions options;
  options.temperature = -1;
  EXPECT_THROW(Sampler{options}, Error);
  options = SamplingOptions();
  options.top_p = 0;
  EXPECT_THROW(Sampler{options}, Error);
  options = SamplingOptions();
  options.top_k = -2;
  EXPECT_THROW(sampling_distribution(torch::zeros({4}), options), Error);
  for (double penalty : {-2.5, 2.5, std::nan("")}) {
    options = SamplingOptions();
    options.presence_penalty = penalty;
    EXPECT_THROW(Sampler{options}, Error);
    options = SamplingOptions();
    options.frequency_penalty = penalty;
    EXPECT_THROW(Sampler{options}, Error);
  }
  options = SamplingOptions();
  options.logit_bias = {{3, 101.0}};
  EXPECT_THROW(Sampler{options}, Error);
  options.logit_bias = {{3, 1.0}, {3, 2.0}};  // twice
  EXPECT_THROW(Sampler{options}, Error);
  options.logit_bias = {{-1, 1.0}};
  EXPECT_THROW(Sampler{options}, Error);
  options.logit_bias = {{4, 1.0}};  // outside logits of 4
  Sampler outside(options);
  EXPECT_THROW(outside.next_token(torch::zeros({4})), Error);
}

// OpenAI's penalties and logit bias: each step's adjusted logits against a direct computation
// from the counts of the tokens drawn so far, and greedy choices that follow them.
TEST(Sampling, PenaltiesAndLogitBiasAdjustTheLogitsByTheDrawnCounts) {
  SamplingOptions options;
  options.temperature = 0.7;
  options.seed = 5;
  options.presence_penalty = 0.4;
  options.frequency_penalty = 0.3;
  options.logit_bias = {{2, 1.5}, {5, -100.0}};
  Sampler sampler(options);
  const std::vector<double> base = {2.0, 1.9, 0.1, 1.0, -0.5, 3.0};
  const auto logits = torch::tensor(std::vector<float>(base.begin(), base.end()));
  std::vector<int64_t> counts(base.size(), 0);
  for (int step = 0; step < 40; ++step) {
    const auto adjusted = sampler.adjusted_logits(logits);
    for (size_t j = 0; j < base.size(); ++j) {
      double expected = base[j] - counts[j] * 0.3 - (counts[j] > 0 ? 0.4 : 0.0);
      if (j == 2) expected += 1.5;
      if (j == 5) expected -= 100.0;
      EXPECT_NEAR(adjusted[static_cast<int64_t>(j)].item<double>(), expected, 1e-5) << "step " << step << " token " << j;
    }
    const int64_t token = sampler.next_token(logits);
    ASSERT_NE(token, 5) << "a bias of -100 leaves it no chance";
    ++counts[static_cast<size_t>(token)];
  }
  EXPECT_GT(counts[2] + counts[3] + counts[4], 0) << "penalised favourites hand over to the others";
  EXPECT_EQ(logits[0].item<float>(), 2.0f) << "the caller's logits are left as they were";

  // Greedy: token 0 (2.0) first, then 1 (1.9 beats 2.0 - 0.3 - 0.4 = 1.3), then 0 again (1.3
  // beats 1.9 - 0.7 = 1.2), then 1 (1.2 beats 2.0 - 0.6 - 0.4 = 1.0 and token 2's 1.0).
  SamplingOptions greedy;
  greedy.temperature = 0;
  greedy.presence_penalty = 0.4;
  greedy.frequency_penalty = 0.3;
  Sampler picker(greedy);
  const auto three = torch::tensor({2.0f, 1.9f, 1.0f});
  std::vector<int64_t> picked;
  for (int step = 0; step < 4; ++step) picked.push_back(picker.next_token(three));
  EXPECT_EQ(picked, (std::vector<int64_t>{0, 1, 0, 1}));
}

}  // namespace
}  // namespace nextn::inference
