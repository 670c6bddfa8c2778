// Tree drafts (`--draft-tree 2,2`): instead of one chain d_1..d_N, each depth proposes several
// candidates for every candidate of the depth above, and the main model verifies the whole tree in
// one forward with tree attention (SpecInfer, Miao et al. 2023, arXiv 2305.09781, section 4; SGLang
// and Medusa do the same for EAGLE/MTP drafters). The longest path the main model agrees with is
// accepted.
//
// The tree's root is the pending token t_n (level 0); a node at level m is a candidate for
// t_{n+m}. Nodes are numbered parents first (breadth-first), so that a path's nodes have increasing
// numbers and a node's ancestors come before it.
//
// Greedy: a node's children are the drafter's k best tokens there (distinct). Sampling: its
// children are k independent draws from the drafter's q at that node, and verification is
// SpecInfer's multi-step speculative sampling (Algorithm 2 and Theorem 4.2 there): try the draws in
// order, accept draw x with probability min(1, p(x) / q(x)), after a rejection replace p by
// normalize(max(0, p - q)); if every draw is rejected the next token is drawn from that p. Each
// rejection step is an ordinary speculative sampling step with target p (Leviathan et al. 2023),
// whose rejected branch draws from the residual; by induction over the draws and the levels, every
// token produced is distributed exactly as under the main model alone. Draws of one token may
// repeat: they share one node (a repeat of a rejected draw is rejected, since the residual is 0
// there, but still moves p on).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "nextn/inference/sampling.h"

namespace nextn::inference {

// "2,2" -> {2, 2}: the children per node at each level (1..levels). nextn::Error on anything else
// (empty, a non-number, a count < 1, more than 8 levels, or more than 64 nodes in all).
std::vector<int64_t> parse_draft_tree(const std::string& text);
std::string draft_tree_label(const std::vector<int64_t>& branching);  // {2, 2} -> "2,2"
int64_t draft_tree_nodes(const std::vector<int64_t>& branching);      // drafted nodes: 2 + 2x2 = 6

class DraftTree {
 public:
  struct Node {
    int64_t token = -1;
    int64_t parent = -1;  // -1 for the root
    int64_t level = 0;
    std::vector<int64_t> children;
    // Sampling only: the drafter's draws at this node in the order drawn (repeats included), and
    // the distribution q [V] they were drawn from.
    std::vector<int64_t> draws;
    torch::Tensor draft_probs;
  };

  explicit DraftTree(int64_t root_token);

  // Adds a child of `parent` with `token`, or returns the child that already has it.
  int64_t add_child(int64_t parent, int64_t token);
  int64_t size() const { return static_cast<int64_t>(nodes_.size()); }
  const Node& node(int64_t index) const { return nodes_.at(index); }
  Node& node(int64_t index) { return nodes_.at(index); }
  int64_t levels() const { return levels_; }       // the deepest node's level
  std::vector<int64_t> at_level(int64_t level) const;  // node numbers, in order
  // The nodes from level 1 down to `index` (empty for the root).
  std::vector<int64_t> path_to(int64_t index) const;
  bool is_ancestor_or_self(int64_t ancestor, int64_t index) const;
  // Additive mask [R, R] over the given nodes (in that order): 0 where node rows[a] may see
  // rows[b] (b an ancestor of a, or a itself), -inf elsewhere.
  torch::Tensor ancestor_mask(const std::vector<int64_t>& rows, const torch::TensorOptions& options) const;

 private:
  std::vector<Node> nodes_;
  int64_t levels_ = 0;
};

struct TreeVerification {
  std::vector<int64_t> path;  // the accepted nodes, levels 1..a (a prefix of a root-to-leaf path)
  int64_t next_token = -1;    // the main model's token after them
};

// Greedy: from the root, move to the child whose token is the main model's argmax while there is
// one; the next token is the argmax at the last node reached. target_logits [size, V]: row i is
// the main model's next-token logits at node i. Output equals plain greedy decoding.
TreeVerification verify_tree_greedy(const DraftTree& tree, const torch::Tensor& target_logits);

// Sampling: multi-step speculative sampling down the tree (above). target_probs [size, V] are
// sampling_distribution() rows at every node; each node with children carries its draws and q.
TreeVerification verify_tree_sampled(const DraftTree& tree, const torch::Tensor& target_probs, Sampler& sampler);

}  // namespace nextn::inference
