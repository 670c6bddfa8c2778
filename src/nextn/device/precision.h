// Training precision: fp32, or bf16 mixed precision (autocast: matrix products in bfloat16, fp32
// master weights, gradients and optimizer state). On CPU the bf16 products go through libtorch's
// oneDNN path (libtorch 1.13 takes it on CPUs with AVX-512; oneDNN uses AVX512_BF16 where there);
// on CUDA through cuBLAS.
#pragma once

#include <torch/torch.h>

#include <string>

#include "nextn/device/cpu_gemm.h"

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

// CPU threads and fp32 product library (device/cpu_gemm.h) for a training step in `precision`
// with `threads` for its products. oneDNN (bf16 products, and fp32 ones with `fp32_gemm` oneDNN)
// runs on libtorch's intra-op pool, OpenBLAS on its own threads; the two pools busy-wait against
// each other on few cores, so the step gives all threads to the pool of its products and 1 to the
// other (measured with `nextn bench train`: docs/BENCHMARKS.md).
void use_cpu_training_threads(Precision precision, int threads, CpuFp32Gemm fp32_gemm);

// The type a matrix product of `x` computes in here: autocast's type when autocast is on for x's
// device, else x's own. For code that runs its products itself (out= variants, which autocast
// does not cover) and casts its operands to this type first.
torch::ScalarType product_dtype(const torch::Tensor& x);

}  // namespace nextn
