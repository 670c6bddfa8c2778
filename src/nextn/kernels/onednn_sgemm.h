// float32 matrix products through oneDNN's sgemm (Debian's libdnnl, the library libtorch's own
// bf16 products already use). On this project's CPUs it runs 1.8-3.6x OpenBLAS's sgemm on the
// AVX2 kernels and 1.0-2.4x its AVX-512 kernels, most on a training step's short inner dimensions
// (256, 64): see docs/BENCHMARKS.md "fp32 products". Built in when CMake finds libdnnl-dev.
#pragma once

#include <cstdint>
#include <string>

namespace nextn::kernels {

// Whether this build has oneDNN's sgemm; "oneDNN 2.6.3" or "none".
bool onednn_sgemm_built();
std::string onednn_version();

// Row-major C [m, n] = op(A) op(B) + beta C, where op(A) is A [m, k] (lda >= k) or, with
// transpose_a, the transpose of A [k, m] (lda >= m); the same for B [k, n] / [n, k] with ldb.
// beta is 0 (C is overwritten, never read) or 1 (C accumulates). Runs on the calling thread's
// OpenMP thread count (libtorch's intra-op threads). Deterministic for a given shape and thread
// count. Throws std::runtime_error if oneDNN reports an error or is not built in.
void onednn_sgemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

}  // namespace nextn::kernels
