// `nextn bench decode`: tokens/s of plain decoding and of MTP speculative decoding with N = 1..3
// drafts per step, measured side by side in one run (the variants alternate within each repeat,
// so that noise on a shared machine hits them alike), with each depth's acceptance, the mean
// tokens per verify step, the speedup over plain decoding and the efficiency
//   efficiency = speedup / mean tokens per verify step,
// which is 1 when drafting and verifying N + 1 tokens cost nothing beyond a plain step
// (DeepSeek-V3 reports 1.8x at 85-90% acceptance with N = 1, i.e. about 0.95).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nextn/inference/draft_head.h"
#include "nextn/model/deepseek_v3.h"

namespace nextn {

struct DecodeBenchOptions {
  int64_t new_tokens = 128;      // generated per run (greedy, no stop token)
  int64_t max_draft = 3;         // speculative variants N = 1..max_draft
  bool reuse_last_module = true; // N > D runs module D again (otherwise such N are skipped)
  int64_t repeats = 3;           // runs per variant; medians are reported
  double temperature = 0.0;      // 0: greedy (outputs are then checked identical to plain)
  uint64_t seed = 0;             // sampling seed
  // Cheaper drafters, each also run for N = 1..max_draft: drafting from these token ids only
  // (non-empty: e.g. a corpus's most frequent, inference/token_ranking.h), and/or from a bfloat16
  // copy of the head (with and without the vocabulary).
  std::vector<int64_t> draft_vocabulary;
  std::string draft_vocabulary_source;  // for people and the JSON: the ranking file, or id order
  bool bf16_draft_head = false;
  // Also "mtp auto": each step drafts the count in 0..N that the draft policy expects to pay
  // most (draft_policy.h), N = max_draft (or the MTP depth without reuse_last_module).
  bool adaptive = true;
  // Also tree drafts (--draft-tree, inference/draft_tree.h), one variant per shape, e.g. {2, 2}.
  std::vector<std::vector<int64_t>> trees;

  // The draft heads the variants use: the model's own first, then the cheaper ones asked for.
  std::vector<inference::DraftHeadOptions> draft_heads() const;
};

struct DecodeBenchResult {
  std::string variant;                      // "plain", "mtp N=1", "mtp tree 2,2", ...
  int64_t draft_tokens = 0;                 // 0 for plain
  int64_t draft_vocab = 0;                  // tokens drafts may be; 0: the whole vocabulary
  std::string draft_vocab_source;           // where those tokens come from ("" for the whole vocabulary)
  std::string draft_head_dtype = "model";   // "model" or "bf16" (inference::DraftHeadDtype)
  double decode_tokens_per_second = 0;      // median over repeats, prefill excluded
  double prefill_seconds = 0;               // median
  double step_ms = 0, draft_ms = 0, verify_ms = 0;  // per decoding step, medians
  double mean_tokens_per_step = 1;
  std::vector<double> acceptance_per_depth;  // given the earlier drafts were accepted
  double speedup = 1;                       // median over repeats of tokens/s over plain's in the same repeat
  double efficiency = 1;                    // speedup / mean_tokens_per_step
  bool same_output_as_plain = true;         // greedy only; always true for sampling
  std::vector<int64_t> steps_by_draft_count; // auto: how many steps drafted 0, 1, ... (all repeats)
  std::vector<int64_t> draft_tree;          // a tree variant's shape (empty for chains)
  int64_t tree_nodes = 0;                   // ... and the nodes it drafts per step (verified rows - 1)
};

// The model must be in eval mode; the prompt is token ids.
std::vector<DecodeBenchResult> benchmark_decoding(DeepSeekV3 model, const std::vector<int64_t>& prompt,
                                                  const DecodeBenchOptions& options);
std::string format_decode_bench(const std::vector<DecodeBenchResult>& results);
// The operators one decoding step dispatches (counts and times per step, top `top` by time),
// for plain decoding (draft_tokens 0) or speculative decoding with N drafts, after a prefill of
// the prompt: where a step's time goes.
std::string profile_decoding(DeepSeekV3 model, const std::vector<int64_t>& prompt, const DecodeBenchOptions& options,
                             int64_t draft_tokens, const inference::DraftHeadOptions& draft_head, int top);
// One JSON object per line, one line per variant (for bench/compare.sh and other tools).
std::string decode_bench_json(const std::vector<DecodeBenchResult>& results);

}  // namespace nextn
