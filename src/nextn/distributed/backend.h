// The c10d side of distributed/: which process group backend runs a device's collectives, and the
// handles that keep c10d's types out of the other headers. Included by distributed/*.cpp only.
#pragma once

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include <chrono>
#include <string>

#include "nextn/distributed/cluster.h"

namespace nextn::dist {

struct ProcessGroupHandle {
  c10::intrusive_ptr<c10d::ProcessGroup> group;
  torch::Device device{torch::kCPU};  // where its collectives' tensors must be (CUDA for NCCL)
};

struct WorkHandle {
  c10::intrusive_ptr<c10d::Work> work;
};

// An exception's message; libtorch's without the C++ backtrace it appends.
std::string error_text(const std::exception& e);

// A process group of `size` ranks over `store` (a PrefixStore unique to the group).
// Gloo: TCP on the interface named by GLOO_SOCKET_IFNAME, else loopback when the rendezvous is on
// this machine, else the interface this machine's hostname resolves to (as PyTorch does).
// NCCL: only in builds against a CUDA libtorch with NCCL (NEXTN_WITH_NCCL); elsewhere an Error.
// device: the rank's compute device (NCCL's collectives run there; Gloo's on the CPU).
std::shared_ptr<ProcessGroupHandle> make_process_group(Backend backend, const c10::intrusive_ptr<c10d::Store>& store,
                                                       int rank, int size, std::chrono::milliseconds timeout,
                                                       const std::string& master_addr, const torch::Device& device);

}  // namespace nextn::dist
