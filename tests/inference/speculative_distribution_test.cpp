// Speculative sampling must leave the output distribution exactly the main model's (Leviathan et
// al. 2023, Theorem 1). On a vocabulary of 8, the joint distribution of the first three generated
// tokens is computed exactly by enumerating the main model's own probabilities (8 + 64 sequences)
// and compared with many speculative samples by a chi-square test. The same statistic, with a
// deliberately wrong acceptance rule, must reject: that is what shows the test can fail.
#include <gtest/gtest.h>

#include <cmath>

#include "inference_test_support.h"
#include "nextn/inference/draft_tree.h"
#include "nextn/inference/speculative_decoder.h"
#include "nextn/inference/speculative_sampling.h"

namespace nextn::inference {
namespace {

using testing::random_model;

constexpr int64_t kVocab = 8;
constexpr int64_t kGenerated = 3;
constexpr int64_t kCells = kVocab * kVocab * kVocab;

// P(t1, t2, t3 | prompt) = p(t1) p(t2 | t1) p(t3 | t1, t2), with p the main model's sampling
// distribution (temperature, top-k, top-p applied), from two batched full forwards.
std::vector<double> exact_joint(DeepSeekV3& model, const std::vector<int64_t>& prompt, const SamplingOptions& sampling) {
  torch::NoGradGuard no_grad;
  const int64_t length = static_cast<int64_t>(prompt.size());
  auto prompt_ids = torch::tensor(prompt, torch::kLong);
  auto last_probs = [&](const torch::Tensor& ids) {  // ids [B, L] -> p(next) [B, V]
    auto logits = model->forward(ids, ForwardOptions{false, false}).logits.select(1, ids.size(1) - 1);
    return sampling_distribution(logits, sampling);
  };
  auto p1 = last_probs(prompt_ids.view({1, -1}))[0];  // [V]
  auto all = torch::arange(kVocab, torch::kLong);
  auto with_t1 = torch::cat({prompt_ids.view({1, -1}).expand({kVocab, length}), all.view({kVocab, 1})}, 1);
  auto p2 = last_probs(with_t1);  // [t1, V]
  auto with_t2 = torch::cat({with_t1.repeat_interleave(kVocab, 0), all.repeat(kVocab).view({-1, 1})}, 1);
  auto p3 = last_probs(with_t2).view({kVocab, kVocab, kVocab});  // [t1, t2, V]
  auto joint = (p1.view({kVocab, 1, 1}) * p2.view({kVocab, kVocab, 1}) * p3).reshape({-1}).to(torch::kDouble).contiguous();
  return std::vector<double>(joint.data_ptr<double>(), joint.data_ptr<double>() + kCells);
}

// Counts of (t1, t2, t3) over `samples` speculative generations. A step may produce more tokens
// than needed; only the first three count (a prefix of an exactly distributed sequence is exact).
struct Samples {
  std::vector<int64_t> counts;  // per (t1, t2, t3)
  std::vector<int64_t> accepted, reached;  // per depth, summed over all generations
};

Samples sample_joint(DeepSeekV3& model, const std::vector<int64_t>& prompt, const SamplingOptions& sampling,
                                  const SpeculativeOptions& speculative, int64_t samples) {
  const int64_t drafted = speculative.tree.empty() ? speculative.draft_tokens : draft_tree_nodes(speculative.tree);
  const int64_t capacity = static_cast<int64_t>(prompt.size()) + kGenerated + drafted + 2;
  SpeculativeDecoder decoder(model, speculative, sampling, capacity);
  const int64_t depths = speculative.tree.empty() ? speculative.draft_tokens : static_cast<int64_t>(speculative.tree.size());
  Samples result{std::vector<int64_t>(kCells, 0), std::vector<int64_t>(depths, 0), std::vector<int64_t>(depths, 0)};
  for (int64_t s = 0; s < samples; ++s) {
    std::vector<int64_t> generated = decoder.start(prompt);
    while (static_cast<int64_t>(generated.size()) < kGenerated) {
      auto more = decoder.step(capacity);
      generated.insert(generated.end(), more.begin(), more.end());
    }
    result.counts[(generated[0] * kVocab + generated[1]) * kVocab + generated[2]] += 1;
    for (int64_t k = 0; k < depths; ++k) {
      result.accepted[k] += decoder.stats().accepted_per_depth[k];
      result.reached[k] += decoder.stats().reached_per_depth[k];
    }
  }
  return result;
}

struct ChiSquare {
  double statistic = 0;
  int64_t degrees_of_freedom = 0;
  double critical_value = 0;  // at significance 1e-3
  bool rejects() const { return statistic > critical_value; }
};

// Pearson's chi-square; cells expected fewer than 5 times are pooled into one.
ChiSquare chi_square(const std::vector<int64_t>& counts, const std::vector<double>& probabilities) {
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  ChiSquare result;
  double pooled_expected = 0, pooled_observed = 0;
  int64_t bins = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double expected = probabilities[i] * total;
    if (expected < 5.0) {
      pooled_expected += expected;
      pooled_observed += counts[i];
      continue;
    }
    result.statistic += (counts[i] - expected) * (counts[i] - expected) / expected;
    ++bins;
  }
  if (pooled_expected > 0) {
    // Observations where the exact probability is 0 (filtered out) land here and blow up the statistic.
    result.statistic += (pooled_observed - pooled_expected) * (pooled_observed - pooled_expected) / pooled_expected;
    ++bins;
  }
  result.degrees_of_freedom = bins - 1;
  // Wilson-Hilferty: chi2_df quantile ~ df (1 - 2/(9 df) + z sqrt(2/(9 df)))^3, z(0.999) = 3.0902.
  const double df = static_cast<double>(result.degrees_of_freedom);
  const double a = 2.0 / (9.0 * df);
  result.critical_value = df * std::pow(1.0 - a + 3.0902 * std::sqrt(a), 3);
  return result;
}

// Wrong rule 1: accept every draft (the output is then the drafter's, not the target's).
Verification always_accept(const torch::Tensor& target_probs, const torch::Tensor&, const std::vector<int64_t>& drafts,
                           Sampler& sampler) {
  return {static_cast<int64_t>(drafts.size()), sampler.sample(target_probs[drafts.size()]).item<int64_t>()};
}

// Wrong rule 2: the right acceptance test, but a rejection resamples from p instead of
// normalize(max(0, p - q)), which over-represents tokens q already proposes too often.
Verification resample_from_target(const torch::Tensor& target_probs, const torch::Tensor& draft_probs,
                                  const std::vector<int64_t>& drafts, Sampler& sampler) {
  Verification result;
  for (size_t i = 0; i < drafts.size(); ++i) {
    const double p = target_probs[i][drafts[i]].item<double>();
    const double q = draft_probs[i][drafts[i]].item<double>();
    if (sampler.uniform() * q < p) {
      ++result.accepted;
      continue;
    }
    result.next_token = sampler.sample(target_probs[i]).item<int64_t>();
    return result;
  }
  result.next_token = sampler.sample(target_probs[drafts.size()]).item<int64_t>();
  return result;
}

// Wrong tree rule: each draw tested against p itself, never against the residual after a
// rejection (the multi-candidate mistake: tokens several draws propose come out too often).
TreeVerification tree_without_residual(const DraftTree& tree, const torch::Tensor& target_probs, Sampler& sampler) {
  TreeVerification result;
  int64_t at = 0;
  while (true) {
    const auto& node = tree.node(at);
    int64_t next = -1;
    for (int64_t token : node.draws) {
      const double p = target_probs[at][token].item<double>(), q = node.draft_probs[token].item<double>();
      if (sampler.uniform() * q < p) {
        for (int64_t child : node.children) {
          if (tree.node(child).token == token) next = child;
        }
        break;
      }
    }
    if (next < 0) {
      result.next_token = sampler.sample(target_probs[at]).item<int64_t>();
      return result;
    }
    result.path.push_back(next);
    at = next;
  }
}

struct Case {
  const char* name;
  MtpKind kind;
  int64_t drafts;
  bool reuse;
  double temperature;
  int64_t top_k;
  double top_p;
  DraftHeadOptions draft_head = {};  // SpeculativeOptions::draft_head
  bool adaptive = false;             // SpeculativeOptions::adaptive
  std::vector<int64_t> tree = {};    // SpeculativeOptions::tree
};

// A small dense model: thousands of generations must take seconds. Two layers, one MTP block each
// with attention, so that caches and rollback matter as in the big model.
ModelConfig fast_config(MtpKind kind) {
  ModelConfig c = testing::small_vocab_config(kVocab, kind);
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_hidden_layers = 2;
  c.first_k_dense_replace = 2;
  c.n_routed_experts = 0;
  c.q_lora_rank.reset();
  c.kv_lora_rank = 8;
  return c;
}

void run_case(const Case& c, int64_t samples, bool check_wrong_rules) {
  ModelConfig config = fast_config(c.kind);
  DeepSeekV3 model = random_model(config, 71, 0.5);
  SamplingOptions sampling;
  sampling.temperature = c.temperature;
  sampling.top_k = c.top_k;
  sampling.top_p = c.top_p;
  sampling.seed = 1234;
  const std::vector<int64_t> prompt = {0, 3, 5, 2};
  const auto expected = exact_joint(model, prompt, sampling);

  SpeculativeOptions speculative = testing::chain_of_drafts(c.drafts, c.reuse);
  speculative.draft_head = c.draft_head;
  speculative.adaptive = c.adaptive;
  speculative.tree = c.tree;
  Samples exact_samples = sample_joint(model, prompt, sampling, speculative, samples);
  // Every branch of the rule must have run: acceptances at the first two depths (so deeper drafts
  // and the bonus token were used) and rejections (so the residual distribution was).
  EXPECT_GT(exact_samples.accepted[0], samples / 10) << c.name;
  EXPECT_GT(exact_samples.accepted[1], samples / 50) << c.name;
  EXPECT_LT(exact_samples.accepted[0], exact_samples.reached[0]) << c.name;
  auto exact = chi_square(exact_samples.counts, expected);
  EXPECT_FALSE(exact.rejects()) << c.name << ": chi2 " << exact.statistic << " > " << exact.critical_value << " (df "
                                << exact.degrees_of_freedom << ")";
  if (!check_wrong_rules) return;
  if (!c.tree.empty()) {
    speculative.tree_verify_override = tree_without_residual;
    auto no_residual = chi_square(sample_joint(model, prompt, sampling, speculative, samples).counts, expected);
    EXPECT_TRUE(no_residual.rejects()) << c.name << ", no residual: chi2 " << no_residual.statistic << " <= "
                                       << no_residual.critical_value;
    return;
  }
  speculative.sampled_verify_override = always_accept;
  auto accept_all = chi_square(sample_joint(model, prompt, sampling, speculative, samples).counts, expected);
  EXPECT_TRUE(accept_all.rejects()) << c.name << ", always accept: chi2 " << accept_all.statistic << " <= "
                                    << accept_all.critical_value;
  speculative.sampled_verify_override = resample_from_target;
  auto from_p = chi_square(sample_joint(model, prompt, sampling, speculative, samples).counts, expected);
  EXPECT_TRUE(from_p.rejects()) << c.name << ", resample from p: chi2 " << from_p.statistic << " <= "
                                << from_p.critical_value;
}

TEST(SpeculativeSampling, SequentialTwoDraftsReproducesTheTargetDistribution) {
  run_case({"sequential N=2", MtpKind::kSequential, 2, false, 1.0, 0, 1.0}, 1500, /*check_wrong_rules=*/true);
}

TEST(SpeculativeSampling, FiltersAndReuseReproduceTheTargetDistribution) {
  run_case({"sequential N=3 reuse, T=0.8 top-k 6 top-p 0.95", MtpKind::kSequential, 3, true, 0.8, 6, 0.95}, 1500,
           false);
  run_case({"parallel N=2, T=1.3", MtpKind::kParallel, 2, false, 1.3, 0, 1.0}, 1500, false);
}

TEST(SpeculativeSampling, AdaptiveDraftCountsReproduceTheTargetDistribution) {
  // --draft auto: each sample's steps draft 2, 2, 1, ... as the policy tries every count.
  Case c{"sequential auto (0..2 drafts per step)", MtpKind::kSequential, 2, false, 1.0, 0, 1.0};
  c.adaptive = true;
  run_case(c, 1500, false);
}

TEST(SpeculativeSampling, ACheaperDraftHeadReproducesTheTargetDistribution) {
  // Drafts only from 5 of the 8 ids, not in id order, scored by bfloat16 weights: q is 0 for the
  // other 3, which the target still produces, and q must land on the right ids.
  run_case({"sequential N=2, draft vocabulary {6, 2, 7, 0, 3} of 8, bf16 head", MtpKind::kSequential, 2, false, 1.0, 0,
            1.0, {{6, 2, 7, 0, 3}, DraftHeadDtype::kBFloat16}},
           1500, false);
}

TEST(SpeculativeSampling, TreeDraftsReproduceTheTargetDistribution) {
  // Several draws per node from q, repeats sharing a node, verified by the multi-candidate rule;
  // the same statistic rejects that rule without its residual update.
  Case sequential{"sequential tree 3,2", MtpKind::kSequential, 2, false, 1.0, 0, 1.0};
  sequential.tree = {3, 2};
  run_case(sequential, 1500, /*check_wrong_rules=*/true);
  Case parallel{"parallel tree 2,3 at T=0.8, top-k 6", MtpKind::kParallel, 2, false, 0.8, 6, 1.0};
  parallel.tree = {2, 3};
  run_case(parallel, 1500, false);
}

}  // namespace
}  // namespace nextn::inference
