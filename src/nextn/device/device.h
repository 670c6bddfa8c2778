// Where nextn computes: "cpu" (the reference everything is tested on) or "cuda[:N]"; training's
// precision on each is device/precision.h's. Every command that computes takes --device; everything
// CUDA-specific stays behind this header and compat/torch_compat.h, so the CPU build never depends
// on CUDA.
#pragma once

#include <torch/torch.h>

#include <string>

namespace nextn {

// "cpu", "cuda" or "cuda:N". A CUDA device on a libtorch without CUDA, or without a visible GPU,
// or an index past the GPUs there are, is a nextn::Error that says which.
torch::Device resolve_device(const std::string& name);

}  // namespace nextn
