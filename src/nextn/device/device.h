// Where nextn computes: "cpu" (fp32, the reference everything is tested on) or "cuda[:N]" (bf16
// autocast in training). Every command that computes takes --device; everything CUDA-specific
// stays behind this header and compat/torch_compat.h, so the CPU build never depends on CUDA.
#pragma once

#include <torch/torch.h>

#include <string>

namespace nextn {

// "cpu", "cuda" or "cuda:N". A CUDA device on a libtorch without CUDA, or without a visible GPU,
// or an index past the GPUs there are, is a nextn::Error that says which.
torch::Device resolve_device(const std::string& name);

// Mixed precision for the forward and loss of a training step: bf16 autocast on CUDA (matrix
// products in bf16, reductions and the loss in fp32; weights, gradients and optimizer state stay
// fp32), nothing on CPU, where training is fp32. Scoped like torch.autocast.
class TrainingPrecisionScope {
 public:
  explicit TrainingPrecisionScope(const torch::Device& device);
  ~TrainingPrecisionScope();
  TrainingPrecisionScope(const TrainingPrecisionScope&) = delete;
  TrainingPrecisionScope& operator=(const TrainingPrecisionScope&) = delete;

 private:
  bool active_ = false;
  bool previous_enabled_ = false;
};

// "fp32" or "bf16 autocast": what TrainingPrecisionScope does on `device` (for logs).
std::string training_precision(const torch::Device& device);

}  // namespace nextn
