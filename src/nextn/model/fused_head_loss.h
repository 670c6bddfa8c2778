// The output head and the cross-entropy in one pass over chunks of rows: never holds the
// [tokens, vocab] logits, nor their gradient, of more than one chunk.
//
// The unfused path (deepseek_v3 output_head + cross_entropy_sum) keeps the logits of the main model
// and of each MTP depth for the backward: tokens x vocab floats per depth, the largest activations
// of a training step at these sizes (8 x 256 tokens x 8192 vocabulary = 64 MiB per depth). Here the
// forward computes, chunk by chunk, the loss and already the gradients of the head's input and of
// the head weight for an upstream gradient of 1 (the loss is a scalar, so the backward only scales
// them): three products per chunk as in the unfused path, no recomputation. The idea is Liger
// Kernel's fused linear cross-entropy (Hsu et al., 2024); this is written from the formula
//   d/dz [-log softmax(z)_t] = softmax(z) - onehot(t),  z = x W^T:  dx = g W,  dW = g^T x.
#pragma once

#include <torch/torch.h>

#include "nextn/model/cross_entropy.h"

namespace nextn {

// x [N, H] (the head's normed input), weight [V, H], targets int64 [N]; rows whose target is
// ignore_index are not counted. chunk_rows: rows per chunk (0: about 8 MiB of fp32 logits).
// Same result as cross_entropy_sum(linear(x, weight), targets) up to rounding.
CrossEntropySum fused_head_cross_entropy(const torch::Tensor& x, const torch::Tensor& weight,
                                         const torch::Tensor& targets, int64_t ignore_index, int64_t chunk_rows = 0);

}  // namespace nextn
