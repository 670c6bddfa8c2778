#include "nextn/distributed/backend.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#ifdef NEXTN_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "nextn/util/error.h"

namespace nextn::dist {
namespace {

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr == "::1" || addr.rfind("127.", 0) == 0;
}

// This machine's address on the route to `host` (a UDP socket "connected" there sends nothing but
// gets the source address the kernel would use); empty when it cannot tell.
std::string local_address_toward(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), "9", &hints, &found) != 0 || found == nullptr) return "";
  std::string address;
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  if (fd >= 0 && ::connect(fd, found->ai_addr, found->ai_addrlen) == 0) {
    sockaddr_in local{};
    socklen_t length = sizeof local;
    char text[INET_ADDRSTRLEN] = {};
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0 &&
        ::inet_ntop(AF_INET, &local.sin_addr, text, sizeof text) != nullptr) {
      address = text;
    }
  }
  if (fd >= 0) ::close(fd);
  ::freeaddrinfo(found);
  return address;
}

// The interface Gloo's TCP pairs bind to: GLOO_SOCKET_IFNAME's first name when set (as in
// PyTorch); else loopback for a rendezvous on this machine; else the address this machine uses
// to reach MASTER_ADDR, which every other rank can reach too on a flat network; else whatever
// this machine's hostname resolves to.
std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string& master_addr) {
  if (const char* names = std::getenv("GLOO_SOCKET_IFNAME"); names != nullptr && *names != '\0') {
    const std::string first(names, std::strchr(names, ',') ? std::strchr(names, ',') : names + std::strlen(names));
    return c10d::ProcessGroupGloo::createDeviceForInterface(first);
  }
  if (is_loopback(master_addr)) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  const std::string local = local_address_toward(master_addr);
  if (!local.empty()) return c10d::ProcessGroupGloo::createDeviceForHostname(local);
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

std::string error_text(const std::exception& e) {
  if (auto* c10_error = dynamic_cast<const c10::Error*>(&e)) return c10_error->what_without_backtrace();
  return e.what();
}

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
