// Checkpoints of a run whose experts are split over ranks (expert parallelism) keep the one
// Hugging Face layout a single process writes: before a save, the ranks of the expert-parallel
// group that holds global rank 0 gather each layer's expert stacks and their optimizer moments
// to rank 0, which writes them under their usual names. A resume loads the whole checkpoint, then
// keeps its own slice; so a run resumes under any world size and any E that divides it (2 -> 1,
// 1 -> 2), as the same run.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nextn/checkpoint/hf_tensor_map.h"
#include "nextn/distributed/cluster.h"
#include "nextn/model/deepseek_v3.h"
#include "nextn/training/adamw.h"

namespace nextn {

struct GatheredState {
  FullExperts full_experts;  // empty unless experts are sharded; filled on rank 0 only
  std::vector<std::pair<std::string, torch::Tensor>> optimizer_tensors;  // complete on rank 0
};

// Collective over the expert-parallel group of global rank 0 (other ranks return at once). A model
// with no sharded experts (and a null cluster: one process) just gives the optimizer's state.
GatheredState gather_for_checkpoint(DeepSeekV3Impl& model, const AdamW& optimizer, dist::Cluster* cluster);

// Cuts the expert parameters' moments of a complete checkpoint ([E, ...] per layer) down to the
// slice each of `model`'s sharded layers holds, in place; other tensors are left as they are.
void slice_expert_optimizer_state(std::map<std::string, torch::Tensor>& tensors, DeepSeekV3Impl& model,
                                  const AdamW& optimizer);

}  // namespace nextn
