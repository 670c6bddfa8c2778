#include "nextn/util/runtime_info.h"

#include <dlfcn.h>
#include <torch/torch.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <thread>

#include "nextn/compat/torch_compat.h"
#include "nextn/kernels/few_rows_matmul.h"
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

// jemalloc, when linked into the executable, exports mallctl; report its version and whether it
// keeps freed pages (src/runtime/jemalloc_conf.cpp).
std::string allocator_description() {
  using Mallctl = int (*)(const char*, void*, size_t*, void*, size_t);
  auto mallctl = reinterpret_cast<Mallctl>(::dlsym(RTLD_DEFAULT, "mallctl"));
  if (mallctl == nullptr) return "glibc malloc";
  const char* version = nullptr;
  size_t size = sizeof(version);
  mallctl("version", &version, &size, nullptr, 0);
  ssize_t decay = 0;
  size = sizeof(decay);
  mallctl("opt.dirty_decay_ms", &decay, &size, nullptr, 0);
  return cat("jemalloc ", version == nullptr ? "?" : version, " (dirty_decay_ms ", decay, ")");
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

int hardware_threads() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

void set_openblas_threads(int threads) {
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(threads);
}

}  // namespace

int hardware_thread_count() { return hardware_threads(); }

int resolve_thread_count(int requested, const char* option) {
  NEXTN_CHECK(requested >= 0, option, " ", requested, " is negative (0 means all cores)");
  const int available = hardware_threads();
  if (requested == 0) return available;
  if (requested > available) {
    std::cerr << "nextn: " << option << " " << requested << " is more than this machine's " << available
              << " hardware threads; using " << available << "\n";
    return available;
  }
  return requested;
}

void set_cpu_threads(int blas, int intra_op) {
  blas = resolve_thread_count(blas);
  if (intra_op <= 0) intra_op = hardware_threads();
  intra_op = std::min(intra_op, hardware_threads());
  torch::set_num_threads(intra_op);
  set_openblas_threads(blas);
  kernels::set_few_rows_matmul_threads(blas);  // decoding's products: the same threads as BLAS's
}

int blas_threads() {
  using GetThreads = int (*)();
  auto get = reinterpret_cast<GetThreads>(::dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return get == nullptr ? 0 : get();
}

ScopedBlasThreads::ScopedBlasThreads(int threads) : saved_(blas_threads()) {
  if (saved_ > 0 && threads != saved_) set_openblas_threads(threads);
}

ScopedBlasThreads::~ScopedBlasThreads() {
  if (saved_ > 0 && blas_threads() != saved_) set_openblas_threads(saved_);
}

RuntimeInfo runtime_info() {
  RuntimeInfo info;
  info.nextn_version = NEXTN_VERSION;
  info.torch_version = compat::torch_version();
  info.blas = blas_description(info.blas_is_openblas);
  info.allocator = allocator_description();
  info.torch_threads = torch::get_num_threads();
  info.blas_threads = blas_threads();
  info.few_rows_kernel = cat(kernels::few_rows_matmul_path_name(kernels::few_rows_matmul_path()),
                             ", ", kernels::few_rows_matmul_threads(), " threads");
  info.hardware_threads = static_cast<int>(std::thread::hardware_concurrency());
  info.cuda_available = torch::cuda::is_available();
  info.cpu_model = cpu_model_name();
  return info;
}

std::string describe(const RuntimeInfo& info) {
  return cat("nextn ", info.nextn_version, " | libtorch ", info.torch_version, " | BLAS: ", info.blas,
             " | allocator: ", info.allocator,
             "\nCPU: ", info.cpu_model, " | hardware threads ", info.hardware_threads,
             " | BLAS threads ", info.blas_threads, " | few-rows kernel ", info.few_rows_kernel,
             " | torch intra-op threads ", info.torch_threads, " | CUDA ",
             info.cuda_available ? "available" : "not available");
}

}  // namespace nextn
