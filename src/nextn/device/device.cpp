#include "nextn/device/device.h"

#include "nextn/util/error.h"

namespace nextn {

torch::Device resolve_device(const std::string& name) {
  if (name == "cpu") return torch::Device(torch::kCPU);
  NEXTN_CHECK(name == "cuda" || name.rfind("cuda:", 0) == 0, "unknown device '", name,
              "': use cpu, cuda or cuda:N");
  int64_t index = 0;
  if (name.size() >= 5) {
    const std::string digits = name.size() > 5 ? name.substr(5) : std::string();
    NEXTN_CHECK(!digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos && digits.size() < 4,
                "device '", name, "': the GPU index must be a number, as in cuda:0");
    index = std::stoll(digits);
  }
  NEXTN_CHECK(torch::cuda::is_available(), "device '", name, "': CUDA is not available here (no visible GPU, or "
              "a libtorch without CUDA: see the README's CUDA build)");
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  NEXTN_CHECK(index < count, "device '", name, "': there ", count == 1 ? "is 1 GPU" : "are " + std::to_string(count) + " GPUs",
              " (indices from 0)");
  return torch::Device(torch::kCUDA, static_cast<torch::DeviceIndex>(index));
}

}  // namespace nextn
