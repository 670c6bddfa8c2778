// One decoding step for several sequences at once (continuous batching): every sequence has its
// own KV cache and its own new tokens (one for plain decoding), all rows go through each layer
// together, so every weight matrix is read once for the whole batch instead of once per
// sequence; only attention runs per sequence, over its own cache. Each row's logits are bit for
// bit those of decoding its sequence alone (run_main_model_cached), however many sequences run
// together and in whichever order: the kernels compute rows independently (linear.h,
// ScopedBatchedDecoding), and routing and the experts sum each token in its own order.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "nextn/inference/kv_cache.h"
#include "nextn/model/deepseek_v3.h"

namespace nextn::inference {

struct BatchedSequence {
  KvCache* cache = nullptr;     // batch 1, the main model's; its length is where the new tokens go
  std::vector<int64_t> tokens;  // new tokens, at least one
};

struct BatchedStep {
  torch::Tensor logits;  // [R, V]: one row per new token, sequences in the given order
  torch::Tensor hidden;  // [R, hidden]: h^0 of each new token
  std::vector<int64_t> first_row;  // of each sequence in logits and hidden
};

// Runs the main model over every sequence's new tokens and appends them to their caches.
BatchedStep run_main_model_batched(DeepSeekV3Impl& model, const std::vector<BatchedSequence>& sequences);

}  // namespace nextn::inference
