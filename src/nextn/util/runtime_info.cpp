#include "nextn/util/runtime_info.h"

#include <dlfcn.h>
#include <torch/torch.h>

#include <fstream>
#include <thread>

#include "nextn/compat/torch_compat.h"
#include "nextn/util/error.h"

namespace nextn {
namespace {

// OpenBLAS exports openblas_get_config; finding it in the process means libtorch's BLAS calls
// land in OpenBLAS (Debian's libblas.so.3 alternative), not in the 20x slower reference BLAS.
std::string blas_description(bool& is_openblas) {
  using GetConfig = char* (*)();
  auto get_config = reinterpret_cast<GetConfig>(::dlsym(RTLD_DEFAULT, "openblas_get_config"));
  if (get_config == nullptr) {
    // libtorch loads its BLAS lazily on some builds; force a matmul and look again.
    (void)torch::mm(torch::ones({2, 2}), torch::ones({2, 2}));
    get_config = reinterpret_cast<GetConfig>(::dlsym(RTLD_DEFAULT, "openblas_get_config"));
  }
  is_openblas = get_config != nullptr;
  if (is_openblas) return std::string("OpenBLAS ") + get_config();
  return "not OpenBLAS (reference BLAS or MKL?)";
}

std::string cpu_model_name() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

}  // namespace

RuntimeInfo runtime_info() {
  RuntimeInfo info;
  info.nextn_version = NEXTN_VERSION;
  info.torch_version = compat::torch_version();
  info.blas = blas_description(info.blas_is_openblas);
  info.torch_threads = torch::get_num_threads();
  info.hardware_threads = static_cast<int>(std::thread::hardware_concurrency());
  info.cuda_available = torch::cuda::is_available();
  info.cpu_model = cpu_model_name();
  return info;
}

std::string describe(const RuntimeInfo& info) {
  return cat("nextn ", info.nextn_version, " | libtorch ", info.torch_version, " | BLAS: ", info.blas,
             "\nCPU: ", info.cpu_model, " | hardware threads ", info.hardware_threads,
             " | torch threads ", info.torch_threads, " | CUDA ",
             info.cuda_available ? "available" : "not available");
}

}  // namespace nextn
