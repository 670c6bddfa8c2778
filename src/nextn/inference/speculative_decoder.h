// Speculative decoding with the model's own MTP modules as drafters (DeepSeek-V3 section 2.2 and
// 5.4.3: the MTP module repurposed for speculative decoding; Leviathan et al. 2023 for the
// acceptance rule).
//
// State between steps: the main model has processed tokens t_0..t_{n-1} (its cache holds n
// entries) and the last token handed out, t_n, is pending. One step:
//   1. Draft N tokens at position i = n - 1. Sequential MTP (Eq. 21-23): depth k combines
//      h^{k-1}_i with Emb(t_{i+k}) and predicts t_{i+k+1}; with t_{n+1}.. unknown, depth k's
//      token input at i is the draft of depth k - 1, so d_1 = t_{n+1} comes from (h^0_{n-1},
//      Emb(t_n)), d_2 from (h^1_{n-1}, Emb(d_1)), and so on. Parallel heads (Gloeckle et al.): head k
//      reads h^0_{n-1} alone and predicts t_{n+k}.
//   2. Verify: one main-model forward over [t_n, d_1..d_N] gives the target's distributions for
//      t_{n+1}..t_{n+N+1}.
//   3. Accept a prefix of a drafts and one target token (speculative_sampling.h); a + 1 tokens out.
//   4. Roll back: the main cache to n + a + 1 entries, every MTP cache to its entries that saw no
//      rejected draft.
//
// Each depth k has its own KV cache (and the sequential kind a record of its outputs h^k), filled
// exactly as the training forward fills that module: its entry at position j is computed from
// h^{k-1}_j and Emb(t_{j+k}). Entry j is therefore correct once t_{j+k} is known, and depth k's
// entries j > n - k at drafting time were computed from drafts. After verification, with n' = n +
// a + 1 tokens processed and t_{n'} the new pending token, depth k keeps its entries j <= n' - k
// (their tokens t_{j+k} are verified ones) and drops the rest; the next step's draft recomputes them
// from the verified tokens before drafting at position n' - 1 (one cached forward per depth over
// the positions it lacks). Parallel heads read only h^0, which is always verified: no rollback.
//
// Depths beyond the model's D run module D again (an option; each reuse has its own cache).
#pragma once

#include <torch/torch.h>

#include "nextn/inference/batched_forward.h"
#include "nextn/inference/draft_head.h"
#include "nextn/inference/draft_policy.h"
#include "nextn/inference/draft_tree.h"
#include "nextn/inference/kv_cache.h"
#include "nextn/inference/prompt_prefill.h"
#include "nextn/inference/sampling.h"
#include "nextn/inference/speculative_sampling.h"
#include "nextn/inference/token_decoder.h"
#include "nextn/model/deepseek_v3.h"

#include <functional>
#include <optional>

namespace nextn::inference {

struct SpeculativeOptions {
  int64_t draft_tokens = 1;        // N, drafts per step; with adaptive, the most
  bool reuse_last_module = false;  // N > D runs module D for depths D+1..N; otherwise N > D is an error
  // Replaces verify_sampled when set. Only tests set it, to show that the distribution test
  // catches a wrong acceptance rule.
  SampledVerifyRule sampled_verify_override;
  // Which tokens drafts may be and the head weights' dtype (draft_head.h): a cheaper drafter,
  // the same output.
  DraftHeadOptions draft_head;
  // --draft auto: each step drafts the count in 0..draft_tokens that DraftCountPolicy
  // (draft_policy.h) expects to give the most tokens per second; step_costs, when set, are the
  // step times shared with other requests (a fresh set per request otherwise).
  bool adaptive = false;
  std::shared_ptr<DraftStepCosts> step_costs;
  // --draft-tree: a tree of drafts per step instead of a chain (draft_tree.h), the children per
  // node at each level; draft_tokens is then its level count. Empty: a chain of draft_tokens.
  std::vector<int64_t> tree;
  // The prompt's main-model prefill runs in chunks of this many tokens (prompt_prefill.h), as plain
  // decoding's: the same bits, so greedy output equals plain decoding's for any prompt length.
  int64_t prefill_chunk = kDefaultPrefillChunk;
  // Replaces verify_tree_sampled when set (tests: a wrong multi-candidate rule must be caught).
  std::function<TreeVerification(const DraftTree&, const torch::Tensor& target_probs, Sampler&)> tree_verify_override;
};

// What one step drafted and what became of it (for tests, `nextn inspect`-style tools, debugging).
struct SpeculativeStep {
  int64_t position = 0;             // n: the pending token's index; drafts are for n+1 .. n+N
  std::vector<int64_t> drafts;      // d_1..d_N
  // draft_logits[k - 1]: depth k's logits over the draft head's K candidates (one tensor per
  // depth, as the drafts left them: stacking them cost a copy of N x K floats every step).
  std::vector<torch::Tensor> draft_logits;
  int64_t accepted = 0;
  int64_t next_token = -1;          // the target's token after the accepted drafts
  // Tree drafts: the tree the step drafted (none for a chain); `drafts` then holds the accepted
  // path and draft_logits is empty.
  std::optional<DraftTree> tree;
};

class SpeculativeDecoder : public TokenDecoder {
 public:
  // capacity: the most tokens (prompt + generated) the sequence may reach.
  SpeculativeDecoder(DeepSeekV3 model, const SpeculativeOptions& options, const SamplingOptions& sampling,
                     int64_t capacity);

  void begin(const std::vector<int64_t>& prompt) override;
  std::optional<int64_t> run_prefill_chunk() override;
  int64_t next_prefill_tokens() const override { return prefill_.next_computed_tokens(); }
  // Asked before begin(): the prompt's full chunks are kept in and reused from `cache` (not owned;
  // it must outlive the prefill). Null: none.
  void use_prefix_cache(PrefixCache* cache) { prefix_cache_ = cache; }
  // Drafts min(N, max_tokens - 1, room() - 1) tokens (N: the policy's choice when adaptive), or
  // a tree of that many levels whose nodes all fit the capacity, verifies them, returns accepted +
  // 1 tokens.
  std::vector<int64_t> step(int64_t max_tokens) override;
  int64_t room() const override { return capacity_ - static_cast<int64_t>(tokens_.size()); }
  const std::vector<int64_t>& tokens() const override { return tokens_; }
  const DecodeStats& stats() const override { return stats_; }

  // Continuous batching: a step without drafts taken inside a server's batched forward
  // (run_main_model_batched over batched_input(), then finish_batched_step() with this request's
  // row of its logits and hidden states), as step() would take it with N = 0; the MTP caches
  // catch up when the request drafts again. Needs room() >= 1.
  BatchedSequence batched_input();
  int64_t finish_batched_step(const torch::Tensor& logits_row, const torch::Tensor& hidden_row, double step_seconds);

  // For tests and tools.
  const KvCache& main_cache() const { return main_cache_; }
  const KvCache& draft_cache(int64_t depth) const;  // depth 1..N
  int64_t module_for_depth(int64_t depth) const;     // the MTP module (1..D) that drafts at depth k
  const DraftHead& draft_head() const { return draft_head_; }
  const SpeculativeStep& last_step() const { return last_step_; }

 private:
  struct DraftDepth {
    int64_t module = 0;            // MTP module index, 1-based
    KvCache cache;                 // entries for positions [0, cache.length())
    torch::Tensor hidden_history;  // sequential: h^k [1, capacity, hidden] at the cached positions
  };
  struct Drafts {
    std::vector<int64_t> tokens;
    std::vector<torch::Tensor> logits;         // depth k's logits [V] per draft
    std::vector<torch::Tensor> distributions;  // q_k [V] per draft (sampling only)
  };

  Drafts draft(int64_t count);
  // The target's verdict on the drafts from its logits [count + 1, V] at the pending position and
  // after each draft.
  Verification judge(const torch::Tensor& target_logits, const Drafts& drafts);
  // Keeps the accepted drafts and the target's token, rolls the caches back to them, counts the
  // step (timed_alone: the step's time was this request's alone, for the draft policy).
  std::vector<int64_t> commit(int64_t n, Drafts drafts, const Verification& verdict, double draft_seconds,
                              double step_seconds, bool timed_alone);
  // Makes `depth` cover positions [its length, end) and returns its output h^k there:
  // [1, end - length, hidden], or only at end - 1 ([1, 1, hidden]) where no deeper depth reads
  // this one's outputs. A chain's draft position is end - 1 = n - 1 (n = the main cache's length).
  torch::Tensor catch_up(int64_t depth, int64_t end, const std::vector<int64_t>& tokens_with_drafts);
  // A step without drafts after the main model's forward over the pending token t_n: keeps h^0,
  // takes the sampler's token (as judge() would with no drafts), counts the step (timed_alone:
  // for the draft policy too). Returns the new token.
  int64_t take_plain_step(int64_t n, const torch::Tensor& logits_row, const torch::Tensor& hidden_row,
                          double step_seconds, bool timed_alone);
  // Counts a step that drafted `depths` deep and accepted `accepted` (per-depth figures, times).
  void count_step(int64_t depths, int64_t accepted, int64_t produced, double draft_seconds, double step_seconds);

  // Tree drafts (speculative_tree_step.cpp): the most levels of the tree whose nodes fit the
  // budget and the capacity; one step with that many; the tree it verifies.
  int64_t tree_levels_that_fit(int64_t max_tokens) const;
  std::vector<int64_t> tree_step(int64_t levels);
  DraftTree draft_tree(int64_t levels);
  // Gives every node in `parents` its children from the drafter's logits there (one row each of
  // logits [R, K]), `count` per node: the best ones (greedy) or draws from q (sampling).
  void add_children(DraftTree& tree, const std::vector<int64_t>& parents, const torch::Tensor& logits, int64_t count);
  void roll_back_draft_caches(int64_t verified_length);
  torch::Tensor input_hidden_history(int64_t depth) const;  // h^{k-1} at every position

  DeepSeekV3 model_;
  SpeculativeOptions options_;
  Sampler sampler_;
  int64_t capacity_;
  bool sequential_;
  PromptPrefill prefill_;       // the prompt's chunks still to run
  PrefixCache* prefix_cache_ = nullptr;
  bool started_ = false;  // the prompt has run and its first token is out: steps may follow
  KvCache main_cache_;          // holds tokens_[0 .. size - 2]; the last token is pending
  torch::Tensor main_hidden_;   // h^0 [1, capacity, hidden] of the processed tokens
  std::vector<DraftDepth> depths_;
  DraftHead draft_head_;
  std::vector<int64_t> tokens_;
  DecodeStats stats_;
  SpeculativeStep last_step_;
  std::optional<DraftCountPolicy> policy_;  // adaptive only; per request (reset by start())
};

}  // namespace nextn::inference
