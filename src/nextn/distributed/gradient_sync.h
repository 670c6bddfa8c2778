// Data-parallel gradient averaging, in buckets overlapped with the backward pass (the idea of
// PyTorch DDP's Reducer, written for nextn's two kinds of parameters):
//   replicated parameters (attention, dense layers, shared experts, router, MTP modules, heads):
//       summed over the `gradients` group (every rank)
//   expert parameters (this rank's slice of each layer's routed experts): summed over the ranks
//       that hold the same experts (`expert_data`), or not at all when no other rank holds them
// and then divided by the world size: every rank's loss is the mean over its own sequences, so
// the average over ranks is the gradient of the global batch's mean (expert gradients already
// sum the contributions of every rank whose tokens they computed, through the all-to-all).
//
// Parameters are packed into buckets of about `bucket_bytes` in reverse registration order (the
// order backward produces them). After arm(), a post-hook on each parameter's gradient
// accumulator counts it ready; a full bucket is copied flat and its all-reduce started while
// backward goes on. Buckets start strictly in index order, so every rank issues the same
// collectives in the same order. finish() starts the rest (a parameter without a gradient
// contributes zeros), waits, and writes the averages back.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "nextn/distributed/communicator.h"

namespace nextn::dist {

inline constexpr int64_t kDefaultBucketBytes = 25ll << 20;  // DDP's default bucket_cap_mb

class GradientSync {
 public:
  // A communicator may be null: those gradients are only divided by world_size.
  GradientSync(const std::vector<torch::Tensor>& replicated, Communicator* replicated_group,
               const std::vector<torch::Tensor>& experts, Communicator* expert_group, int world_size,
               int64_t bucket_bytes = kDefaultBucketBytes);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // The next backward pass produces the step's final gradients (the last micro-batch).
  void arm();
  // After that backward: every bucket reduced and written back; disarms.
  void finish();

  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }
  // Buckets whose all-reduce started during backward in the last finished step (overlap).
  int64_t buckets_started_in_backward() const { return started_in_backward_; }

  void mark_ready(size_t param_index);  // called by the accumulator hooks

 private:
  struct Bucket;
  void start_ready_buckets();
  void start(Bucket& bucket);

  std::vector<torch::Tensor> params_;
  std::vector<size_t> bucket_of_param_;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // keeps the hooks alive
  std::vector<uintptr_t> hook_keys_;
  double scale_;
  bool armed_ = false;
  size_t next_to_start_ = 0;
  int64_t started_in_backward_ = 0;
};

}  // namespace nextn::dist
