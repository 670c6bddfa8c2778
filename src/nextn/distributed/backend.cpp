#include "nextn/distributed/backend.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#ifdef NEXTN_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cstdlib>
#include <cstring>

#include "nextn/util/error.h"

namespace nextn::dist {
namespace {

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr == "::1" || addr.rfind("127.", 0) == 0;
}

std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string& master_addr) {
  if (const char* names = std::getenv("GLOO_SOCKET_IFNAME"); names != nullptr && *names != '\0') {
    const std::string first(names, std::strchr(names, ',') ? std::strchr(names, ',') : names + std::strlen(names));
    return c10d::ProcessGroupGloo::createDeviceForInterface(first);
  }
  if (is_loopback(master_addr)) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

Backend backend_for(const torch::Device& device) { return device.is_cuda() ? Backend::kNccl : Backend::kGloo; }

std::string to_string(Backend backend) { return backend == Backend::kNccl ? "nccl" : "gloo"; }

bool backend_available(Backend backend) {
#ifdef NEXTN_WITH_NCCL
  return true;
#else
  return backend == Backend::kGloo;
#endif
}

std::shared_ptr<ProcessGroupHandle> make_process_group(Backend backend, const c10::intrusive_ptr<c10d::Store>& store,
                                                       int rank, int size, std::chrono::milliseconds timeout,
                                                       const std::string& master_addr, const torch::Device& device) {
  auto handle = std::make_shared<ProcessGroupHandle>();
  if (backend == Backend::kGloo) {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(gloo_device(master_addr));
    handle->group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
    return handle;
  }
#ifdef NEXTN_WITH_NCCL
  NEXTN_CHECK(device.is_cuda(), "the NCCL backend needs a CUDA device, got ", device.str());
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  handle->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, options);
  handle->device = device;
  return handle;
#else
  fail("the NCCL backend is not in this build of nextn (it needs a CUDA libtorch with NCCL: see README, "
       "The CUDA build); CPU runs use gloo");
#endif
}

}  // namespace nextn::dist
