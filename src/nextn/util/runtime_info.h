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
  std::string allocator;  // "jemalloc 5.3.0 (dirty_decay_ms -1)" or "glibc malloc"
  int torch_threads = 0;
  int blas_threads = 0;
  std::string few_rows_kernel;  // decoding's products (kernels/few_rows_matmul.h): "AVX-512, 2 threads"
  int hardware_threads = 0;
  bool cuda_available = false;
  std::string cpu_model;
};

RuntimeInfo runtime_info();

// CPU threads: `blas_threads` for OpenBLAS (the matrix products, where threads pay off) and
// `intra_op_threads` for libtorch's OpenMP pool (elementwise ops). Both pools busy-wait, and on
// small machines two spinning pools on the same cores made training 2.5x slower than one
// (docs/BENCHMARKS.md), so nextn runs libtorch's pool with 1 thread unless asked otherwise.
// The few-rows kernel of decoding takes `blas_threads` too. 0 = all hardware threads.
void set_cpu_threads(int blas_threads, int intra_op_threads = 1);

// A thread count as users give it (`--threads`): 0 means every hardware thread; more than the
// machine has is clamped to that, with a note on stderr naming `option` (more threads than cores
// only slows spinning pools down, and 10^5 threads exhaust the process's address space).
int resolve_thread_count(int requested, const char* option = "--threads");
int hardware_thread_count();
int blas_threads();  // OpenBLAS's current thread count, 0 if the BLAS is not OpenBLAS

// Sets OpenBLAS's thread count for a scope and restores the previous count at its end; nothing
// where the BLAS is not OpenBLAS. The count is process-wide: meant for one decoding loop at a time.
class ScopedBlasThreads {
 public:
  explicit ScopedBlasThreads(int threads);
  ~ScopedBlasThreads();
  ScopedBlasThreads(const ScopedBlasThreads&) = delete;
  ScopedBlasThreads& operator=(const ScopedBlasThreads&) = delete;

 private:
  int saved_;  // 0: not OpenBLAS, nothing to restore
};

std::string describe(const RuntimeInfo& info);

}  // namespace nextn
