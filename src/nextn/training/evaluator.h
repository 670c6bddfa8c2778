// Evaluation over the validation split: main and per-depth MTP losses and top-1 accuracies (the
// acceptance a greedy drafter would see), MaxVio_global per MoE layer over the whole set, and
// per-layer expert load. Used every N training steps and by `nextn eval`.
#pragma once

#include "nextn/data/token_dataset.h"
#include "nextn/distributed/cluster.h"
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
// With a distributed cluster every rank must call it: the ranks split each batch of
// batch_size x world windows (the windows one process with that batch size would read), and the
// sums are added over the world, so every rank returns the same figures. With sharded experts a
// rank whose share of the last batch is empty still runs a row (discarded) to take part in the
// all-to-alls.
EvalMetrics evaluate(DeepSeekV3Impl& model, const data::TokenDataset& dataset, const EvalOptions& options,
                     dist::Cluster* cluster = nullptr);

}  // namespace nextn
