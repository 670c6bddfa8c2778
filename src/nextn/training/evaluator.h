// Evaluation over the validation split: main and per-depth MTP losses and top-1 accuracies (the
// acceptance a greedy drafter would see), MaxVio_global per MoE layer over the whole set, and
// per-layer expert load. Used every N training steps and by `nextn eval`.
#pragma once

#include "nextn/data/token_dataset.h"
#include "nextn/model/deepseek_v3.h"
#include "nextn/training/metrics_log.h"

namespace nextn {

struct EvalOptions {
  int64_t batch_size = 8;
  int64_t seq_len = 256;
  int64_t max_batches = 0;  // 0: every validation window
  bool mtp = true;
};

// Losses are mean negative log-likelihoods per counted position (depth k counts the positions
// whose target t_{i+k+1} lies in the same document), so depths are comparable with each other.
EvalMetrics evaluate(DeepSeekV3Impl& model, const data::TokenDataset& dataset, const EvalOptions& options);

}  // namespace nextn
