#include "nextn/device/precision.h"

#include "nextn/compat/torch_compat.h"
#include "nextn/util/error.h"
#include "nextn/util/runtime_info.h"

namespace nextn {

Precision precision_from_string(const std::string& name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "bf16") return Precision::kBf16;
  fail("unknown precision '", name, "': use fp32 or bf16");
}

std::string to_string(Precision precision) { return precision == Precision::kBf16 ? "bf16" : "fp32"; }

Precision default_precision(const torch::Device& device) {
  return device.is_cuda() ? Precision::kBf16 : Precision::kFp32;
}

TrainingPrecisionScope::TrainingPrecisionScope(const torch::Device& device, Precision precision) {
  if (precision != Precision::kBf16) return;
  active_ = true;
  device_type_ = device.type();
  previous_enabled_ = compat::autocast_enabled(device_type_);
  compat::enter_autocast(device_type_, torch::kBFloat16);
}

TrainingPrecisionScope::~TrainingPrecisionScope() {
  if (active_) compat::exit_autocast(device_type_, previous_enabled_);
}

FullPrecisionScope::FullPrecisionScope()
    : cpu_enabled_(compat::autocast_enabled(at::kCPU)), cuda_enabled_(compat::autocast_enabled(at::kCUDA)) {
  if (cpu_enabled_) compat::set_autocast_enabled(at::kCPU, false);
  if (cuda_enabled_) compat::set_autocast_enabled(at::kCUDA, false);
}

FullPrecisionScope::~FullPrecisionScope() {
  if (cpu_enabled_) compat::set_autocast_enabled(at::kCPU, true);
  if (cuda_enabled_) compat::set_autocast_enabled(at::kCUDA, true);
}

void use_cpu_training_threads(Precision precision, int threads, CpuFp32Gemm fp32_gemm) {
  set_cpu_fp32_gemm(fp32_gemm);
  if (precision == Precision::kBf16 || fp32_gemm == CpuFp32Gemm::kOneDnn) {
    set_cpu_threads(1, threads);
  } else {
    set_cpu_threads(threads, 1);
  }
}

torch::ScalarType product_dtype(const torch::Tensor& x) {
  const auto device = x.device().type();
  const bool floating = x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kDouble;
  if (floating && (device == at::kCPU || device == at::kCUDA) && compat::autocast_enabled(device)) {
    return compat::autocast_dtype(device);
  }
  return x.scalar_type();
}

}  // namespace nextn
