// softmax(logits) over the last dimension, computed in the logits' type and returned in `dtype`,
// keeping for the backward only that returned copy.
//
// bf16 attention computes its probabilities in fp32 and hands bf16 ones to the product with the
// values. Through autograd as is, the step would then hold both: the fp32 probabilities for
// softmax's backward and the bf16 ones for the product's, [B, heads, T, T] each (8 + 4 MiB per
// attention layer of `small` at batch 8 x 256, six such layers with D = 2). Here
// the backward, d logits = p * (g - sum(g * p)), reads the bf16 p (in fp32 arithmetic): the
// gradient moves by bf16's rounding of p, as much as the product's backward already does.
#pragma once

#include <torch/torch.h>

namespace nextn {

// logits [..., N] (float or double); same type as the logits: exactly torch::softmax.
torch::Tensor softmax_to(const torch::Tensor& logits, torch::ScalarType dtype);

}  // namespace nextn
