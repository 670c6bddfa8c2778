// Training precision: fp32, or bf16 mixed precision (autocast: matrix products in bfloat16, fp32
// master weights, gradients and optimizer state). On CPU the bf16 products go through libtorch's
// oneDNN path (libtorch 1.13 takes it on CPUs with AVX-512; oneDNN uses AVX512_BF16 where there);
// on CUDA through cuBLAS.
#pragma once

#include <torch/torch.h>

#include <string>

namespace nextn {

enum class Precision { kFp32, kBf16 };

Precision precision_from_string(const std::string& name);  // "fp32" | "bf16", else a nextn::Error
std::string to_string(Precision precision);
// What a run gets when it does not say: bf16 on CUDA, fp32 on CPU (what runs did before the
// choice existed, so that their run.json, which has no precision, resumes as it ran).
Precision default_precision(const torch::Device& device);

// The forward and loss of a training step in `precision` on `device`, scoped like torch.autocast.
// bf16: every matrix product autocast covers (mm, bmm, matmul, linear) takes bfloat16 operands and
// gives a bfloat16 result; everything else computes in its inputs' type, and the model upcasts
// where precision matters (norms, softmax, the loss; the router's product, see FullPrecisionScope).
// Backward, run after the scope, replays the products in the types the forward saved.
class TrainingPrecisionScope {
 public:
  TrainingPrecisionScope(const torch::Device& device, Precision precision);
  ~TrainingPrecisionScope();
  TrainingPrecisionScope(const TrainingPrecisionScope&) = delete;
  TrainingPrecisionScope& operator=(const TrainingPrecisionScope&) = delete;

 private:
  bool active_ = false;
  at::DeviceType device_type_ = at::kCPU;
  bool previous_enabled_ = false;
};

// Autocast switched off on every device within the scope: products take their operands' types.
// The MoE gate's affinities use it, since expert selection among close scores must not depend on
// bf16 rounding (DeepSeek-V3 keeps its gating in higher precision, section 3.3.2).
class FullPrecisionScope {
 public:
  FullPrecisionScope();
  ~FullPrecisionScope();
  FullPrecisionScope(const FullPrecisionScope&) = delete;
  FullPrecisionScope& operator=(const FullPrecisionScope&) = delete;

 private:
  bool cpu_enabled_ = false;
  bool cuda_enabled_ = false;
};

// CPU threads for a training step in `precision` with `threads` for its products: fp32 products
// run on OpenBLAS's threads (libtorch's intra-op pool at 1), bf16 ones on libtorch's pool through
// oneDNN (OpenBLAS at 1, for the few fp32 products left, such as the router's). The two pools
// busy-wait against each other on few cores, so each precision gives all to one (measured with
// `nextn bench train`: docs/BENCHMARKS.md).
void use_cpu_training_threads(Precision precision, int threads);

// The type a matrix product of `x` computes in here: autocast's type when autocast is on for x's
// device, else x's own. For code that runs its products itself (out= variants, which autocast
// does not cover) and casts its operands to this type first.
torch::ScalarType product_dtype(const torch::Tensor& x);

}  // namespace nextn
