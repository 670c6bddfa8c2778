// The one place where libtorch version differences live. nextn builds against Debian 12's
// libtorch 1.13 (CPU) and against libtorch 2.x (CUDA or CPU); code elsewhere calls these helpers
// instead of testing versions itself.
#pragma once

#include <torch/torch.h>

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

}  // namespace nextn::compat
