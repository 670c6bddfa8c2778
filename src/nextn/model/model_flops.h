// Floating-point operations of the model's matrix products, for throughput and model FLOPs
// utilisation (MFU, PaLM: Chowdhery et al. 2022, appendix B). Counted as nextn computes them:
// 2 FLOPs per multiply-add of every product of weights with activations (attention projections,
// dense and expert MLPs of the K routed experts each token activates, the router, eh_proj, the
// output head of the main model and of every MTP depth) and of the attention itself (scores over
// the whole window and the weighted sum of values, as the training forward computes them; the
// causal mask does not skip work). Elementwise work, norms, softmax and the loss are not counted.
#pragma once

#include <cstdint>

#include "nextn/config/model_config.h"

namespace nextn {

struct ModelFlops {
  int64_t projections = 0;  // weights x activations
  int64_t attention = 0;    // q k^T and probs v
  int64_t total() const { return projections + attention; }
};

// One forward pass over `batch` windows of `length` tokens, with the MTP modules (module k over
// the length - k positions that have a target) or without them.
ModelFlops forward_flops(const ModelConfig& config, int64_t batch, int64_t length, bool with_mtp);

// A training step: the forward plus a backward that computes two products (input and weight
// gradients) for each product of the forward: 3x the forward.
int64_t training_step_flops(const ModelConfig& config, int64_t batch, int64_t length, bool with_mtp);

}  // namespace nextn
