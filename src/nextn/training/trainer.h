// `nextn train`: the MTP objective with auxiliary-loss-free balancing on a prepared dataset,
// with AdamW, a warmup+cosine or WSD schedule, gradient accumulation and clipping, evaluation,
// crash-safe checkpoints and exact resume (DeepSeek-V3 sections 2.1.2, 2.2, 4.1-4.2).
#pragma once

#include <memory>
#include <string>

#include "nextn/distributed/cluster.h"
#include "nextn/training/train_options.h"

namespace nextn {

struct TrainResult {
  int64_t steps_done = 0;
  bool stopped_by_signal = false;
  bool stopped_by_time_budget = false;
  std::string last_checkpoint;
};

// Opens and checks everything (config, dataset, run directory, checkpoint) before any work, then
// trains. Throws nextn::Error for bad input or a run that diverged (too many non-finite steps).
// resume: continue from the newest checkpoint of options.run_dir.
//
// With a distributed cluster every rank calls it with the same options: options.batch_size is
// the micro-batch of each rank (global batch = ranks x micro-batch x accumulation), the ranks
// check at start-up that they agree on config, data and options, each reads its own part of
// every global batch, gradients are averaged over the ranks and the expert loads behind the bias
// update summed over them, so a step computes what one process computes on the global batch.
// Rank 0 alone prints, logs and writes checkpoints.
TrainResult train(const TrainOptions& options, bool resume, dist::Cluster* cluster = nullptr);

}  // namespace nextn
