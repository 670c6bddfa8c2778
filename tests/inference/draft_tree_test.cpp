// Tree drafts' pieces on their own: the --draft-tree syntax, the tree's bookkeeping and mask, the
// greedy walk, and the multi-candidate sampling rule against the exact distribution it must give.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "nextn/inference/draft_tree.h"
#include "nextn/util/error.h"

namespace nextn::inference {
namespace {

TEST(DraftTreeShape, ParsesCountsAndRejectsBadShapes) {
  EXPECT_EQ(parse_draft_tree("2,2"), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(parse_draft_tree("3"), (std::vector<int64_t>{3}));
  EXPECT_EQ(parse_draft_tree("4,2,1"), (std::vector<int64_t>{4, 2, 1}));
  EXPECT_EQ(draft_tree_nodes({2, 2}), 6);
  EXPECT_EQ(draft_tree_nodes({4, 2, 1}), 4 + 8 + 8);
  EXPECT_EQ(draft_tree_label({4, 2, 1}), "4,2,1");
  for (const char* bad : {"", ",", "2,", "2,,2", "0", "2,-1", "x", "2.5", "1,1,1,1,1,1,1,1,1", "8,8,8"}) {
    EXPECT_THROW(parse_draft_tree(bad), Error) << bad;
  }
}

// Root 10; children 11, 12; 11's children 13, 14; 12's child 15.
DraftTree example_tree() {
  DraftTree tree(10);
  EXPECT_EQ(tree.add_child(0, 11), 1);
  EXPECT_EQ(tree.add_child(0, 12), 2);
  EXPECT_EQ(tree.add_child(1, 13), 3);
  EXPECT_EQ(tree.add_child(1, 14), 4);
  EXPECT_EQ(tree.add_child(2, 15), 5);
  return tree;
}

TEST(DraftTreeNodes, LevelsPathsAndTheAncestorMask) {
  DraftTree tree = example_tree();
  EXPECT_EQ(tree.add_child(1, 14), 4) << "a repeated token is the same node";
  EXPECT_EQ(tree.size(), 6);
  EXPECT_EQ(tree.levels(), 2);
  EXPECT_EQ(tree.at_level(1), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(tree.at_level(2), (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(tree.path_to(5), (std::vector<int64_t>{2, 5}));
  EXPECT_TRUE(tree.path_to(0).empty());

  // The mask over a subset, in a given order, against the parent links followed by hand.
  const std::vector<int64_t> rows{0, 1, 2, 3, 4, 5};
  auto mask = tree.ancestor_mask(rows, torch::kDouble);
  const std::vector<std::vector<int64_t>> sees{{0}, {0, 1}, {0, 2}, {0, 1, 3}, {0, 1, 4}, {0, 2, 5}};
  for (int64_t a = 0; a < 6; ++a) {
    for (int64_t b = 0; b < 6; ++b) {
      const bool visible = std::find(sees[a].begin(), sees[a].end(), b) != sees[a].end();
      EXPECT_EQ(mask[a][b].item<double>(), visible ? 0.0 : -std::numeric_limits<double>::infinity()) << a << " " << b;
    }
  }
  auto sub = tree.ancestor_mask({5, 2, 3}, torch::kFloat);
  EXPECT_EQ(sub[0][1].item<float>(), 0.0f);  // 5 sees its parent 2
  EXPECT_TRUE(std::isinf(sub[0][2].item<float>()));
  EXPECT_TRUE(std::isinf(sub[2][1].item<float>()));
}

TEST(DraftTreeGreedy, FollowsTheTargetsArgmaxDownTheTree) {
  DraftTree tree = example_tree();
  auto logits = torch::zeros({6, 20});
  auto argmax_at = [&](int64_t node, int64_t token) { logits[node][token] = 5.0; };
  argmax_at(0, 11);  // root -> 11 (node 1)
  argmax_at(1, 14);  // 11 -> 14 (node 4), a leaf
  argmax_at(4, 7);   // the bonus token
  argmax_at(2, 15);  // off the path: must not matter
  auto verdict = verify_tree_greedy(tree, logits);
  EXPECT_EQ(verdict.path, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(verdict.next_token, 7);

  logits[0].zero_();
  argmax_at(0, 12);
  logits[2].zero_();
  argmax_at(2, 3);  // 12's argmax is not its child 15
  verdict = verify_tree_greedy(tree, logits);
  EXPECT_EQ(verdict.path, (std::vector<int64_t>{2}));
  EXPECT_EQ(verdict.next_token, 3);

  logits[0].zero_();
  argmax_at(0, 9);  // no child at all
  verdict = verify_tree_greedy(tree, logits);
  EXPECT_TRUE(verdict.path.empty());
  EXPECT_EQ(verdict.next_token, 9);
  EXPECT_THROW(verify_tree_greedy(tree, torch::zeros({5, 20})), Error);
}

// One level, V = 4: the root's k draws from q, verified by the multi-candidate rule, must give the
// first token distributed as p exactly. The rule's exact output distribution is computed by
// following every draw and both outcomes of its test, with their probabilities; it must equal p,
// and a rule that skips the residual update must not.
// The rule from distribution `current` with `draws` draws left, reached with probability `weight`:
// adds each output token's probability to `out`.
void add_rule_output(const std::vector<double>& current, const std::vector<double>& q, int64_t draws, double weight,
                     bool update_residual, std::vector<double>& out) {
  const auto vocab = static_cast<int64_t>(current.size());
  if (draws == 0) {  // every draw rejected: the next token comes from the current distribution
    for (int64_t v = 0; v < vocab; ++v) out[v] += weight * current[v];
    return;
  }
  std::vector<double> next = current;
  if (update_residual) {
    double mass = 0.0;
    for (int64_t v = 0; v < vocab; ++v) mass += std::max(0.0, current[v] - q[v]);
    if (mass > 0.0) {
      for (int64_t v = 0; v < vocab; ++v) next[v] = std::max(0.0, current[v] - q[v]) / mass;
    }
  }
  for (int64_t x = 0; x < vocab; ++x) {
    const double accept = std::min(1.0, current[x] / q[x]);
    out[x] += weight * q[x] * accept;
    add_rule_output(next, q, draws - 1, weight * q[x] * (1.0 - accept), update_residual, out);
  }
}

std::vector<double> rule_output(const std::vector<double>& p, const std::vector<double>& q, int64_t draws,
                                bool update_residual) {
  std::vector<double> out(p.size(), 0.0);
  add_rule_output(p, q, draws, 1.0, update_residual, out);
  return out;
}

TEST(DraftTreeSampling, TheMultiCandidateRuleIsExactAndTheResidualMatters) {
  const std::vector<double> p{0.5, 0.3, 0.15, 0.05}, q{0.1, 0.2, 0.3, 0.4};
  for (int64_t draws : {1, 2, 3}) {
    auto exact = rule_output(p, q, draws, true);
    for (size_t v = 0; v < p.size(); ++v) EXPECT_NEAR(exact[v], p[v], 1e-12) << draws << " draws, token " << v;
  }
  auto wrong = rule_output(p, q, 2, false);
  double distance = 0.0;
  for (size_t v = 0; v < p.size(); ++v) distance += std::abs(wrong[v] - p[v]);
  EXPECT_GT(distance, 0.05) << "the enumeration can tell a wrong rule";
}

TEST(DraftTreeSampling, VerifyTreeSampledFollowsTheRule) {
  // The implementation against the enumeration above: a root with draws {3, 3, 1} from q (the
  // repeat shares node 1), sampled 20000 times; the first token's frequencies against the
  // enumerated probabilities of that fixed draw sequence.
  const std::vector<double> p{0.5, 0.3, 0.15, 0.05}, q{0.1, 0.2, 0.3, 0.4};
  DraftTree tree(0);
  tree.add_child(0, 3);
  tree.add_child(0, 1);
  tree.node(0).draws = {3, 3, 1};
  tree.node(0).draft_probs = torch::tensor(q, torch::kDouble);
  auto target = torch::stack({torch::tensor(p, torch::kDouble), torch::full({4}, 0.25, torch::kDouble),
                              torch::full({4}, 0.25, torch::kDouble)});
  // Fixed draws 3, 3, 1: accept 3 w.p. p(3)/q(3) = 0.125; else p' = norm(max(0, p - q)) = {0.4, 0.1, 0, 0}/0.5
  // = {0.8, 0.2, 0, 0}; the repeat 3 is rejected (p'(3) = 0) and p'' = norm(max(0, p' - q)) =
  // {0.7, 0, 0, 0}/0.7 = {1, 0, 0, 0}; then 1 is accepted w.p. 0 and the next token is 0.
  std::vector<double> expected{0.875, 0.0, 0.0, 0.125};
  SamplingOptions options;
  options.seed = 3;
  Sampler sampler(options);
  std::vector<int64_t> counts(4, 0);
  const int64_t samples = 20000;
  for (int64_t s = 0; s < samples; ++s) {
    auto verdict = verify_tree_sampled(tree, target, sampler);
    const int64_t first = verdict.path.empty() ? verdict.next_token : tree.node(verdict.path[0]).token;
    counts[first] += 1;
    if (!verdict.path.empty()) { EXPECT_EQ(verdict.path[0], 1); }
  }
  for (int64_t v = 0; v < 4; ++v) {
    const double sd = std::sqrt(expected[v] * (1 - expected[v]) / samples) + 1e-9;
    EXPECT_NEAR(counts[v] / static_cast<double>(samples), expected[v], 5 * sd + 1e-9) << "token " << v;
  }
}

}  // namespace
}  // namespace nextn::inference
