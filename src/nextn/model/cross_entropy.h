// Cross-entropy of logits against targets, summed over the rows that have a target. Its
// backward is softmax(logits) - onehot(target) in one pass; autograd through log_softmax and
// gather instead materialises a zero-filled [N, V] gradient for the gather and runs libtorch's
// log_softmax backward, several times slower on CPU (docs/BENCHMARKS.md).
#pragma once

#include <torch/torch.h>

namespace nextn {

struct CrossEntropySum {
  torch::Tensor loss_sum;  // scalar: sum over counted rows of -log softmax(logits)[target]
  torch::Tensor correct;   // scalar (no grad): counted rows whose argmax is the target
  int64_t count = 0;       // rows with a target (target != ignore_index)
};

// logits [N, V] (any float type; reductions in at least fp32), targets int64 [N].
CrossEntropySum cross_entropy_sum(const torch::Tensor& logits, const torch::Tensor& targets, int64_t ignore_index);

}  // namespace nextn
