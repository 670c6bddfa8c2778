#include "nextn/kernels/onednn_sgemm.h"

#include <stdexcept>

#if NEXTN_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

namespace nextn::kernels {

#if NEXTN_HAVE_ONEDNN
bool onednn_sgemm_built() { return true; }

std::string onednn_version() {
  const dnnl_version_t* v = dnnl_version();
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
}

void onednn_sgemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, const float* a,
                  int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  const dnnl_status_t status = dnnl_sgemm(transpose_a ? 'T' : 'N', transpose_b ? 'T' : 'N', m, n, k, 1.0f, a, lda, b,
                                          ldb, beta, c, ldc);
  if (status != dnnl_success) {
    throw std::runtime_error("oneDNN sgemm failed (status " + std::to_string(static_cast<int>(status)) + ") on " +
                             std::to_string(m) + "x" + std::to_string(k) + " by " + std::to_string(k) + "x" +
                             std::to_string(n));
  }
}
#else
bool onednn_sgemm_built() { return false; }
std::string onednn_version() { return "none"; }
void onednn_sgemm(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, float, float*,
                  int64_t) {
  throw std::runtime_error("this nextn was built without oneDNN (install libdnnl-dev and rebuild)");
}
#endif

}  // namespace nextn::kernels
