// The one place where libtorch version differences live. nextn builds against Debian 12's
// libtorch 1.13 (CPU) and against libtorch 2.x (CUDA or CPU); code elsewhere calls these helpers
// instead of testing versions itself.
#pragma once

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <optional>
#include <string>

#define NEXTN_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace nextn::compat {

inline std::string torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

// Stable ascending sort of a 1-D tensor; returns the permutation. (The overload with `stable`
// exists in 1.13 and 2.x with the same signature; kept here so callers need not know.)
inline torch::Tensor stable_argsort(const torch::Tensor& values) {
  return std::get<1>(values.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
}

// Element types that only newer libtorch versions define. Code that maps external dtype names
// (safetensors "F8_E4M3", "U16", ...) asks here instead of naming the enumerators, which do not
// compile on older libtorch.
enum class NewerDtype {
  kFloat8_e4m3fn,    // 2.1+
  kFloat8_e5m2,      // 2.1+
  kFloat8_e4m3fnuz,  // appeared around 2.2; gated at 2.3, where it is certainly present
  kFloat8_e5m2fnuz,  // as above
  kUInt16,           // 2.3+
  kUInt32,           // 2.3+
  kUInt64,           // 2.3+
  kFloat8_e8m0fnu,   // 2.7+
};

// The libtorch dtype for `which`, or nullopt where this libtorch lacks it.
inline std::optional<torch::Dtype> newer_dtype(NewerDtype which) {
  switch (which) {
#if NEXTN_TORCH_AT_LEAST(2, 1)
    case NewerDtype::kFloat8_e4m3fn: return c10::ScalarType::Float8_e4m3fn;
    case NewerDtype::kFloat8_e5m2: return c10::ScalarType::Float8_e5m2;
#endif
#if NEXTN_TORCH_AT_LEAST(2, 3)
    case NewerDtype::kFloat8_e4m3fnuz: return c10::ScalarType::Float8_e4m3fnuz;
    case NewerDtype::kFloat8_e5m2fnuz: return c10::ScalarType::Float8_e5m2fnuz;
    case NewerDtype::kUInt16: return c10::ScalarType::UInt16;
    case NewerDtype::kUInt32: return c10::ScalarType::UInt32;
    case NewerDtype::kUInt64: return c10::ScalarType::UInt64;
#endif
#if NEXTN_TORCH_AT_LEAST(2, 7)
    case NewerDtype::kFloat8_e8m0fnu: return c10::ScalarType::Float8_e8m0fnu;
#endif
    default: return std::nullopt;
  }
}

// Autocast on CPU or CUDA, entered and left as torch.autocast(device, dtype) does. libtorch 2.4
// replaced the per-device functions (set_cpu_enabled, set_autocast_gpu_dtype, ...) with ones
// taking a device type.
inline bool autocast_enabled(at::DeviceType device) {
#if NEXTN_TORCH_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(device);
#else
  return device == at::kCPU ? at::autocast::is_cpu_enabled() : at::autocast::is_enabled();
#endif
}

inline void set_autocast_enabled(at::DeviceType device, bool enabled) {
#if NEXTN_TORCH_AT_LEAST(2, 4)
  at::autocast::set_autocast_enabled(device, enabled);
#else
  if (device == at::kCPU) {
    at::autocast::set_cpu_enabled(enabled);
  } else {
    at::autocast::set_enabled(enabled);
  }
#endif
}

// The type autocast gives matrix products on `device` (meaningful while it is enabled there).
inline at::ScalarType autocast_dtype(at::DeviceType device) {
#if NEXTN_TORCH_AT_LEAST(2, 4)
  return at::autocast::get_autocast_dtype(device);
#else
  return device == at::kCPU ? at::autocast::get_autocast_cpu_dtype() : at::autocast::get_autocast_gpu_dtype();
#endif
}

inline void enter_autocast(at::DeviceType device, at::ScalarType dtype) {
#if NEXTN_TORCH_AT_LEAST(2, 4)
  at::autocast::set_autocast_dtype(device, dtype);
#else
  if (device == at::kCPU) {
    at::autocast::set_autocast_cpu_dtype(dtype);
  } else {
    at::autocast::set_autocast_gpu_dtype(dtype);
  }
#endif
  set_autocast_enabled(device, true);
  at::autocast::increment_nesting();
}

inline void exit_autocast(at::DeviceType device, bool previous_enabled) {
  // Leaving the outermost scope frees the casted weight copies autocast caches.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast_enabled(device, previous_enabled);
}

}  // namespace nextn::compat
