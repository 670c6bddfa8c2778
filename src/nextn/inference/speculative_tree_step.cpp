// One speculative step with a tree of drafts (draft_tree.h): SpeculativeDecoder's tree path.
//
// Sequential MTP modules (DeepSeek-V3 Eq. 21-23) draft a tree as they draft a chain, one depth
// after the other, but depth k now runs over every candidate path at once. With n tokens processed
// and t_n pending, depth k's entry at position j reads h^{k-1}_j and Emb(t_{j+k}); positions j <=
// n - k read verified tokens only (the "common" part, cached as for a chain), and position n - k +
// m (m = 1..k-1) reads the level-m candidate of a path. So depth k runs over the tree's nodes at
// levels 1..k-1, the level-m node at position n - k + m, fed h^{k-1} of its parent's row at depth
// k - 1 (the root's: depth k - 1's output at n - k + 1) and its own token, each node seeing the
// common part, its ancestors and itself. Its rows at level k - 1 (all at position n - 1; for k = 1
// the root's, at n - 1 as well) give the logits that the level-k candidates come from. A chain is
// the tree with one child per node: the same entries, computed in one order or the other.
// Parallel heads (Gloeckle et al.) read h^0_{n-1} only: head k's candidates are the children of
// every level-(k - 1) node.
//
// The main model verifies the root t_n (position n) and every node (level m at n + m) in one
// forward with the tree mask, keeps the accepted path's cache entries (KvCache::keep_path) and
// drops the rest. Each depth's cache drops its tree rows (they read candidates): the next step
// recomputes the accepted ones from verified tokens, as a chain's rollback does.
#include <algorithm>
#include <numeric>

#include "nextn/inference/cached_forward.h"
#include "nextn/inference/plain_decoder.h"
#include "nextn/inference/speculative_decoder.h"
#include "nextn/model/linear.h"
#include "nextn/util/error.h"

namespace nextn::inference {

int64_t SpeculativeDecoder::tree_levels_that_fit(int64_t max_tokens) const {
  // A step yields up to levels + 1 tokens; the main cache holds the root and every node at once.
  const int64_t n = main_cache_.length();
  int64_t levels = std::min({static_cast<int64_t>(options_.tree.size()), max_tokens - 1, room() - 1});
  while (levels > 0) {
    std::vector<int64_t> shape(options_.tree.begin(), options_.tree.begin() + levels);
    if (n + 1 + draft_tree_nodes(shape) <= capacity_) break;
    --levels;
  }
  return std::max<int64_t>(levels, 0);
}

void SpeculativeDecoder::add_children(DraftTree& tree, const std::vector<int64_t>& parents, const torch::Tensor& logits,
                                      int64_t count) {
  const int64_t candidates = logits.size(-1);
  if (sampler_.options().greedy()) {
    // The `count` best candidates of each row, best first (distinct tokens).
    auto best = std::get<1>(logits.topk(std::min(count, candidates), -1)).to(torch::kCPU).contiguous();
    for (size_t r = 0; r < parents.size(); ++r) {
      for (int64_t j = 0; j < best.size(1); ++j) {
        tree.add_child(parents[r], draft_head_.token(best[static_cast<int64_t>(r)][j].item<int64_t>()));
      }
    }
    return;
  }
  // Sampling: `count` independent draws from q per node; repeats share a node (draft_tree.h).
  const int64_t vocab = model_->config().vocab_size;
  for (size_t r = 0; r < parents.size(); ++r) {
    auto q = sampler_.distribution(logits[static_cast<int64_t>(r)]);
    DraftTree::Node& parent = tree.node(parents[r]);
    parent.draft_probs = draft_head_.to_vocabulary(q, vocab);
    std::vector<int64_t> draws;
    for (int64_t j = 0; j < count; ++j) draws.push_back(draft_head_.token(sampler_.sample(q).item<int64_t>()));
    for (int64_t token : draws) tree.add_child(parents[r], token);  // may reallocate the nodes
    tree.node(parents[r]).draws = std::move(draws);
  }
}

DraftTree SpeculativeDecoder::draft_tree(int64_t levels) {
  const int64_t n = main_cache_.length();
  DraftTree tree(tokens_[n]);
  const auto device = main_hidden_.device();
  auto head_logits = [&](int64_t depth, const torch::Tensor& h) {  // h [R, hidden] -> [R, K]
    auto normed = model_->mtp_module(depths_[depth - 1].module)->shared_head_norm(h);
    return draft_head_.logits(normed);
  };
  if (!sequential_) {
    for (int64_t k = 1; k <= levels; ++k) {
      auto h = catch_up(k, n, tokens_);  // head k at position n - 1, from verified h^0
      auto logits = head_logits(k, h.select(0, 0).narrow(0, h.size(1) - 1, 1));
      const auto parents = tree.at_level(k - 1);
      add_children(tree, parents, logits.expand({static_cast<int64_t>(parents.size()), logits.size(1)}),
                   options_.tree[k - 1]);
    }
    return tree;
  }

  // previous[v]: depth k - 1's output [hidden] at node v's row (the root's: at position n - k + 1).
  std::vector<torch::Tensor> previous;
  for (int64_t k = 1; k <= levels; ++k) {
    DraftDepth& d = depths_[k - 1];
    std::vector<torch::Tensor> current(static_cast<size_t>(tree.size()));
    // The common part: positions up to n - k (the root's), from verified tokens.
    const int64_t root_position = n - k;
    if (root_position >= 0) {
      if (d.cache.length() <= root_position) {
        auto h = catch_up(k, root_position + 1, tokens_);
        current[0] = h[0][h.size(1) - 1];
      } else {
        NEXTN_CHECK(d.hidden_history.defined(), "draft depth ", k, " holds position ", root_position,
                    " already but keeps no outputs");
        current[0] = d.hidden_history[0][root_position];
      }
    }
    // The tree rows: levels 1..k - 1 at positions n - k + 1..n - 1 (those at positions >= 0).
    std::vector<int64_t> rows;
    for (int64_t m = std::max<int64_t>(1, k - n); m <= k - 1; ++m) {
      for (int64_t v : tree.at_level(m)) rows.push_back(v);
    }
    if (!rows.empty()) {
      std::vector<int64_t> positions, tokens;
      std::vector<torch::Tensor> inputs;
      for (int64_t v : rows) {
        positions.push_back(root_position + tree.node(v).level);
        tokens.push_back(tree.node(v).token);
        inputs.push_back(previous.at(static_cast<size_t>(tree.node(v).parent)));
      }
      TreeSpan span{positions, tree.ancestor_mask(rows, main_hidden_.options())};
      auto h = run_mtp_module_cached(*model_, d.module, torch::stack(inputs).unsqueeze(0),
                                     ids_tensor(tokens, device), d.cache, AttentionForm::kAuto,
                                     CachedOutput::kEveryToken, &span);
      for (size_t i = 0; i < rows.size(); ++i) current[static_cast<size_t>(rows[i])] = h[0][static_cast<int64_t>(i)];
    }
    // Candidates for level k from the rows at level k - 1 (position n - 1).
    const auto parents = tree.at_level(k - 1);
    std::vector<torch::Tensor> parent_hidden;
    for (int64_t v : parents) parent_hidden.push_back(current.at(static_cast<size_t>(v)));
    add_children(tree, parents, head_logits(k, torch::stack(parent_hidden)), options_.tree[k - 1]);
    current.resize(static_cast<size_t>(tree.size()));
    previous = std::move(current);
  }
  return tree;
}

std::vector<int64_t> SpeculativeDecoder::tree_step(int64_t levels) {
  // Every row of the tree through the few-rows kernels, each computed on its own: a path's rows are
  // bit for bit what plain decoding computes for its tokens (greedy output stays identical).
  ScopedBatchedDecoding rows_alone;
  const auto started = std::chrono::steady_clock::now();
  const int64_t n = main_cache_.length();
  DraftTree tree = draft_tree(levels);
  const double draft_seconds = seconds_since(started);

  // Verify the root and every node in one forward; row v predicts the token after node v.
  std::vector<int64_t> rows(static_cast<size_t>(tree.size())), ids, positions;
  std::iota(rows.begin(), rows.end(), 0);
  for (int64_t v : rows) {
    ids.push_back(tree.node(v).token);
    positions.push_back(n + tree.node(v).level);
  }
  TreeSpan span{positions, tree.ancestor_mask(rows, main_hidden_.options())};
  auto out = run_main_model_cached(*model_, ids_tensor(ids, main_hidden_.device()), main_cache_,
                                   LogitsFor::kEveryPosition, AttentionForm::kAuto, &span);
  TreeVerification verdict;
  if (sampler_.options().greedy()) {
    verdict = verify_tree_greedy(tree, out.logits[0]);
  } else {
    auto target_probs = sampler_.distribution(out.logits[0]);
    verdict = options_.tree_verify_override ? options_.tree_verify_override(tree, target_probs, sampler_)
                                            : verify_tree_sampled(tree, target_probs, sampler_);
  }

  // Keep the root's and the accepted path's entries and hidden states; forget the other nodes.
  std::vector<int64_t> kept{0};
  kept.insert(kept.end(), verdict.path.begin(), verdict.path.end());
  main_cache_.keep_path(n, kept);
  auto kept_index = torch::tensor(kept, torch::kLong).to(main_hidden_.device());
  main_hidden_.narrow(1, n, static_cast<int64_t>(kept.size())).copy_(out.hidden.index_select(1, kept_index));
  if (sequential_) {
    for (int64_t k = 1; k <= static_cast<int64_t>(depths_.size()); ++k) {
      KvCache& cache = depths_[k - 1].cache;
      cache.truncate(std::min(cache.length(), std::max<int64_t>(0, n - k + 1)));
    }
  }

  std::vector<int64_t> produced;
  for (int64_t v : verdict.path) produced.push_back(tree.node(v).token);
  produced.push_back(verdict.next_token);
  tokens_.insert(tokens_.end(), produced.begin(), produced.end());
  last_step_ = SpeculativeStep();
  last_step_.position = n;
  last_step_.drafts.assign(produced.begin(), produced.end() - 1);
  last_step_.accepted = static_cast<int64_t>(verdict.path.size());
  last_step_.next_token = verdict.next_token;
  last_step_.tree = std::move(tree);
  count_step(levels, last_step_.accepted, static_cast<int64_t>(produced.size()), draft_seconds, seconds_since(started));
  return produced;
}

}  // namespace nextn::inference
