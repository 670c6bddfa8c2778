// AdamW (Loshchilov & Hutter 2019) with PyTorch's update rule, written out so that its state is
// plain named tensors that checkpoints store as safetensors and a resumed run restores bit for bit.
//   p <- p * (1 - lr * wd)                             decoupled weight decay (decay group only)
//   m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2
//   p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace nextn {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  // Float32 parameters on the CPU update in one pass over memory (kernels/adamw_update.h); false:
  // the libtorch operators, as every other parameter does (the reference the tests compare with).
  bool one_pass = true;
};

struct OptimizedParameter {
  std::string name;
  torch::Tensor param;
  bool decay = true;
  torch::Tensor exp_avg;     // m
  torch::Tensor exp_avg_sq;  // v
};

class AdamW {
 public:
  // decay[name] says whether weight decay applies to that parameter.
  AdamW(const std::vector<std::pair<std::string, torch::Tensor>>& named_params,
        const std::map<std::string, bool>& decay, AdamWOptions options);

  void step(double lr);  // skips parameters without a gradient
  void zero_grad();
  int64_t steps_taken() const { return steps_; }

  // State as named tensors ("<param>.exp_avg", "<param>.exp_avg_sq") plus the step count.
  std::vector<std::pair<std::string, torch::Tensor>> state_tensors() const;
  void load_state(const std::map<std::string, torch::Tensor>& tensors, int64_t steps_taken);

  const std::vector<OptimizedParameter>& parameters() const { return params_; }

 private:
  std::vector<OptimizedParameter> params_;
  AdamWOptions options_;
  int64_t steps_ = 0;
};

// DeepSeek/Megatron convention: no weight decay on norms, biases and (unless asked) the embedding.
std::map<std::string, bool> default_weight_decay(const std::vector<std::pair<std::string, torch::Tensor>>& named_params,
                                                 bool decay_embedding);

// Global L2 norm of all gradients; scales them to max_norm when above it (max_norm <= 0: no
// clipping). Returns the norm before clipping (NaN/Inf propagate, for the caller to detect).
double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm);

// The same when some gradients are split over ranks (expert parallelism): the squared norm of
// `sharded` is summed over the ranks by `sum_over_ranks` before the global norm is taken, so
// every rank clips by the same factor.
double clip_grad_norm(const std::vector<torch::Tensor>& replicated, const std::vector<torch::Tensor>& sharded,
                      double max_norm, const std::function<double(double)>& sum_over_ranks);

}  // namespace nextn
