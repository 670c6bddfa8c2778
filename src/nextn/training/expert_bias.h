// Auxiliary-loss-free load balancing (Wang et al. 2024, arXiv 2408.15664, Algorithm 1; DeepSeek-V3
// section 2.1.2). Once per optimizer step, after every micro-batch of the global batch has run:
//   b_i <- b_i + gamma * sign(mean_j c_j - c_i)
// where c_i counts the tokens routed to expert i over the whole global batch. Overloaded experts
// get a lower bias and are chosen less; the bias never enters the gate weights (router.h).
#pragma once

#include <torch/torch.h>

#include <vector>

#include "nextn/model/moe.h"

namespace nextn {

// Per-layer expert token counts summed over the micro-batches of one optimizer step.
class ExpertLoadAccumulator {
 public:
  void add(const std::vector<MoeStats>& stats);  // one entry per MoE layer, in model order
  void reset() { counts_.clear(); }
  const std::vector<torch::Tensor>& counts() const { return counts_; }  // int64 [E] per layer
  // Replaces the counts (a distributed run's, summed over the ranks); one tensor per layer.
  void set_counts(std::vector<torch::Tensor> counts) { counts_ = std::move(counts); }

 private:
  std::vector<torch::Tensor> counts_;
};

// Applies the update to the first counts.size() MoE layers of `layers` (model order; MTP layers
// are absent from counts when the MTP modules did not run). recenter: subtract the mean of each
// layer's bias afterwards (torchtitan's variant; selection is shift-invariant, so this only
// keeps the values bounded).
void update_expert_bias(std::vector<Moe>& layers, const std::vector<torch::Tensor>& counts, double gamma,
                        bool recenter);

}  // namespace nextn
