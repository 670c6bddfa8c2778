// The model run incrementally over a KV cache: the main model and each MTP module process only
// the new tokens, attending over the cached ones. The training path (DeepSeekV3Impl::forward) is
// the reference these must reproduce position by position (tests/inference/cached_forward_test).
#pragma once

#include <torch/torch.h>

#include "nextn/inference/kv_cache.h"
#include "nextn/model/deepseek_v3.h"

namespace nextn::inference {

// Which MLA form cached attention uses. kAuto: naive for a prefill of more than kFewRowsMax tokens
// (an empty cache, where all queries share one per-head expansion of the keys), absorbed for a
// shorter one (it runs on decoding's kernels) and for every append to a non-empty cache
// (decoding, verifying drafts, catching an MTP module up).
enum class AttentionForm { kAuto, kNaive, kAbsorbed };

// Whether the output head runs at every new position (verifying drafts needs them all), only the
// last one (a prefill needs just the next token's distribution; the head is vocab_size wide), or
// nowhere (a prompt's chunks before its last: prompt_prefill.h).
enum class LogitsFor { kEveryPosition, kLastPosition, kNone };

// RoPE angles for positions [start, start + length): slices of the precomputed tables, with the
// range checked on the host (no device sync, unlike RotaryEmbeddingImpl::angles(positions)).
RopeAngles rope_angles_for_span(const RotaryEmbeddingImpl& rotary, int64_t start, int64_t length);

// New tokens that are a tree of drafts (draft_tree.h) rather than a sequence: each at its own RoPE
// position, seeing every cached token, its ancestors among the new tokens and itself (SpecInfer's
// tree attention). Their cache entries are appended in the given order; the caller keeps the
// accepted path's (KvCache::keep_path) or drops them all (truncate).
struct TreeSpan {
  std::vector<int64_t> positions;  // one per new token
  torch::Tensor mask;              // additive [T, T] (DraftTree::ancestor_mask)
};

struct MainModelStep {
  torch::Tensor logits;  // [B, T, V], or [B, 1, V] with LogitsFor::kLastPosition; undefined with kNone
  torch::Tensor hidden;  // [B, T, hidden]: h^0 of the new tokens (last layer, before the final norm)
};

// Runs the main model over ids int64 [B, T], the tokens at positions cache.length() ..
// cache.length() + T - 1 (or a tree's), and appends their entries to every layer of `cache`.
MainModelStep run_main_model_cached(DeepSeekV3Impl& model, const torch::Tensor& ids, KvCache& cache,
                                    LogitsFor logits_for = LogitsFor::kEveryPosition,
                                    AttentionForm form = AttentionForm::kAuto, const TreeSpan* tree = nullptr);


// Runs MTP module `module` (1-based; its weights, so a reused module runs under another depth's
// cache) over T new positions i appended after its cache's. Sequential: previous_hidden = h^{k-1}_i
// and token_ids = t_{i+k}, both for those positions (Eq. 21-22). Parallel: previous_hidden = h^0_i
// and token_ids undefined. Returns h^k [B, T, hidden] (kLastToken: [B, 1, hidden], the last
// position's, with all T positions cached); the module's position i is RoPE position i, as in
// training.
torch::Tensor run_mtp_module_cached(DeepSeekV3Impl& model, int64_t module, const torch::Tensor& previous_hidden,
                                    const torch::Tensor& token_ids, KvCache& cache,
                                    AttentionForm form = AttentionForm::kAuto,
                                    CachedOutput output = CachedOutput::kEveryToken, const TreeSpan* tree = nullptr);

// The logits of MTP module `module` for its hidden states h^k: its own norm, the shared head (Eq. 23).
torch::Tensor mtp_logits(DeepSeekV3Impl& model, int64_t module, const torch::Tensor& hidden);

}  // namespace nextn::inference
