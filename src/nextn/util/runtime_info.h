// What the process runs on: libtorch version, BLAS library, threads, accelerators. Printed by
// `nextn info` and at the head of every benchmark so that figures name their machine.
#pragma once

#include <string>

namespace nextn {

struct RuntimeInfo {
  std::string nextn_version;
  std::string torch_version;
  std::string blas;  // e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ..."; "unknown" if not identifiable
  bool blas_is_openblas = false;
  int torch_threads = 0;
  int hardware_threads = 0;
  bool cuda_available = false;
  std::string cpu_model;
};

RuntimeInfo runtime_info();
std::string describe(const RuntimeInfo& info);

}  // namespace nextn
