#include "nextn/inference/draft_tree.h"

#include <limits>
#include <sstream>

#include "nextn/util/error.h"

namespace nextn::inference {
namespace {

constexpr int64_t kMostLevels = 8;
constexpr int64_t kMostNodes = 64;

void check_rows(const DraftTree& tree, const torch::Tensor& rows, const char* what) {
  NEXTN_CHECK(rows.dim() == 2 && rows.size(0) == tree.size(), "tree verification needs ", what, " for each of the ",
              tree.size(), " nodes, got ", rows.sizes());
}

}  // namespace

std::vector<int64_t> parse_draft_tree(const std::string& text) {
  std::vector<int64_t> branching;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    long long value = 0;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    NEXTN_CHECK(used > 0 && used == item.size() && value >= 1, "--draft-tree '", text,
                "': each level's branching must be an integer >= 1 (e.g. 2,2), got '", item, "'");
    branching.push_back(value);
  }
  NEXTN_CHECK(!branching.empty() && text.back() != ',', "--draft-tree '", text,
              "': give the children per node of each level, e.g. 2,2");
  NEXTN_CHECK(static_cast<int64_t>(branching.size()) <= kMostLevels, "--draft-tree '", text, "' has ", branching.size(),
              " levels; at most ", kMostLevels);
  NEXTN_CHECK(draft_tree_nodes(branching) <= kMostNodes, "--draft-tree '", text, "' drafts ",
              draft_tree_nodes(branching), " nodes; at most ", kMostNodes, " (the main model verifies them all)");
  return branching;
}

std::string draft_tree_label(const std::vector<int64_t>& branching) {
  std::string label;
  for (size_t i = 0; i < branching.size(); ++i) label += (i ? "," : "") + std::to_string(branching[i]);
  return label;
}

int64_t draft_tree_nodes(const std::vector<int64_t>& branching) {
  int64_t total = 0, width = 1;
  for (int64_t k : branching) {
    width *= k;
    total += width;
    if (total > std::numeric_limits<int32_t>::max()) break;  // far past any limit; no overflow
  }
  return total;
}

DraftTree::DraftTree(int64_t root_token) { nodes_.push_back(Node{root_token, -1, 0, {}, {}, {}}); }

int64_t DraftTree::add_child(int64_t parent, int64_t token) {
  NEXTN_CHECK(parent >= 0 && parent < size(), "draft tree has no node ", parent);
  for (int64_t child : nodes_[parent].children) {
    if (nodes_[child].token == token) return child;
  }
  const int64_t index = size();
  const int64_t level = nodes_[parent].level + 1;
  nodes_.push_back(Node{token, parent, level, {}, {}, {}});
  nodes_[parent].children.push_back(index);
  levels_ = std::max(levels_, level);
  return index;
}

std::vector<int64_t> DraftTree::at_level(int64_t level) const {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < size(); ++i) {
    if (nodes_[i].level == level) out.push_back(i);
  }
  return out;
}

std::vector<int64_t> DraftTree::path_to(int64_t index) const {
  std::vector<int64_t> path;
  for (int64_t i = index; i > 0; i = nodes_.at(i).parent) path.insert(path.begin(), i);
  return path;
}

bool DraftTree::is_ancestor_or_self(int64_t ancestor, int64_t index) const {
  for (int64_t i = index; i >= 0; i = nodes_.at(i).parent) {
    if (i == ancestor) return true;
  }
  return false;
}

torch::Tensor DraftTree::ancestor_mask(const std::vector<int64_t>& rows, const torch::TensorOptions& options) const {
  const auto count = static_cast<int64_t>(rows.size());
  auto mask = torch::full({count, count}, -std::numeric_limits<float>::infinity(), torch::kFloat);
  auto cells = mask.accessor<float, 2>();
  for (int64_t a = 0; a < count; ++a) {
    for (int64_t b = 0; b < count; ++b) {
      if (is_ancestor_or_self(rows[b], rows[a])) cells[a][b] = 0.0f;
    }
  }
  return mask.to(options);
}

TreeVerification verify_tree_greedy(const DraftTree& tree, const torch::Tensor& target_logits) {
  check_rows(tree, target_logits, "logits");
  const std::vector<int64_t> argmax = greedy_tokens(target_logits);  // one transfer from a GPU
  TreeVerification result;
  int64_t at = 0;
  for (bool moved = true; moved;) {
    moved = false;
    for (int64_t child : tree.node(at).children) {
      if (tree.node(child).token == argmax[at]) {
        result.path.push_back(child);
        at = child;
        moved = true;
        break;
      }
    }
  }
  result.next_token = argmax[at];
  return result;
}

TreeVerification verify_tree_sampled(const DraftTree& tree, const torch::Tensor& target_probs, Sampler& sampler) {
  check_rows(tree, target_probs, "probabilities");
  TreeVerification result;
  int64_t at = 0;
  while (true) {
    const DraftTree::Node& node = tree.node(at);
    auto p = target_probs[at].to(torch::kDouble);
    int64_t accepted_child = -1;
    if (!node.draws.empty()) {
      NEXTN_CHECK(node.draft_probs.defined() && node.draft_probs.numel() == p.numel(), "draft tree node ", at,
                  " has draws but no draft distribution over the vocabulary");
      auto q = node.draft_probs.to(p.device(), torch::kDouble);
      for (int64_t token : node.draws) {
        const double q_of = q[token].item<double>();
        const double p_of = p[token].item<double>();
        // Accept with probability min(1, p/q), written u q < p; q(x) > 0 since x was drawn from q.
        if (sampler.uniform() * q_of < p_of) {
          for (int64_t child : node.children) {
            if (tree.node(child).token == token) accepted_child = child;
          }
          NEXTN_CHECK(accepted_child >= 0, "draft tree node ", at, " drew token ", token, " but has no child for it");
          break;
        }
        // Rejected: the next draw is tested against the residual (zero only when p == q, where a
        // rejection cannot happen; rounding aside, keep p then).
        auto residual = (p - q).clamp_min(0.0);
        const double mass = residual.sum().item<double>();
        if (mass > 0.0) p = residual / mass;
      }
    }
    if (accepted_child < 0) {
      // Every draw rejected (sample from the last residual), or a leaf (the bonus token from p).
      result.next_token = sampler.sample(p).item<int64_t>();
      return result;
    }
    result.path.push_back(accepted_child);
    at = accepted_child;
  }
}

}  // namespace nextn::inference
