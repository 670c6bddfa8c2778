#include "nextn/device/cpu_gemm.h"

#include <atomic>
#include <optional>

#include "nextn/compat/torch_compat.h"
#include "nextn/kernels/onednn_sgemm.h"
#include "nextn/util/error.h"

namespace nextn {
namespace {

std::atomic<CpuFp32Gemm>& cpu_fp32_gemm_setting() {
  static std::atomic<CpuFp32Gemm> gemm{CpuFp32Gemm::kBlas};
  return gemm;
}

// A 2-D view as sgemm reads it: row-major with leading dimension `ld`, or the transpose of a
// row-major matrix. Size-1 dimensions have no meaningful stride, so they fit either way.
struct GemmOperand {
  bool transposed = false;
  int64_t ld = 0;
};

std::optional<GemmOperand> as_gemm_operand(const torch::Tensor& t) {
  const int64_t rows = t.size(0), cols = t.size(1);
  if (t.stride(1) == 1 || cols == 1) {
    const int64_t ld = rows == 1 ? std::max<int64_t>(cols, 1) : t.stride(0);
    if (ld >= std::max<int64_t>(cols, 1)) return GemmOperand{false, ld};
  }
  if (t.stride(0) == 1 || rows == 1) {
    const int64_t ld = cols == 1 ? std::max<int64_t>(rows, 1) : t.stride(1);
    if (ld >= std::max<int64_t>(rows, 1)) return GemmOperand{true, ld};
  }
  return std::nullopt;
}

void onednn_mm_into(torch::Tensor& out, const torch::Tensor& a_in, const torch::Tensor& b_in, bool accumulate) {
  const int64_t m = a_in.size(0), k = a_in.size(1), n = b_in.size(1);
  auto a_layout = as_gemm_operand(a_in);
  auto b_layout = as_gemm_operand(b_in);
  const auto a = a_layout ? a_in : a_in.contiguous();
  const auto b = b_layout ? b_in : b_in.contiguous();
  if (!a_layout) a_layout = as_gemm_operand(a);
  if (!b_layout) b_layout = as_gemm_operand(b);
  const auto out_layout = as_gemm_operand(out);
  if (!out_layout || out_layout->transposed) {  // sgemm writes row-major only: go through a copy
    auto staged = accumulate ? out.contiguous() : torch::empty({m, n}, out.options());
    onednn_mm_into(staged, a, b, accumulate);
    out.copy_(staged);
    return;
  }
  if (k == 0) {
    if (!accumulate) out.zero_();
    return;
  }
  kernels::onednn_sgemm(a_layout->transposed, b_layout->transposed, m, n, k, a.data_ptr<float>(), a_layout->ld,
                        b.data_ptr<float>(), b_layout->ld, accumulate ? 1.0f : 0.0f, out.data_ptr<float>(),
                        out_layout->ld);
}

}  // namespace

CpuFp32Gemm cpu_fp32_gemm_from_string(const std::string& name) {
  if (name == "blas") return CpuFp32Gemm::kBlas;
  if (name == "onednn") {
    NEXTN_CHECK(kernels::onednn_sgemm_built(), "--fp32-gemm onednn: this nextn was built without oneDNN ",
                "(install libdnnl-dev, scripts/setup.sh, and rebuild)");
    return CpuFp32Gemm::kOneDnn;
  }
  fail("unknown fp32 gemm '", name, "': use onednn or blas");
}

std::string to_string(CpuFp32Gemm gemm) { return gemm == CpuFp32Gemm::kOneDnn ? "onednn" : "blas"; }

CpuFp32Gemm default_training_fp32_gemm() {
  return kernels::onednn_sgemm_built() ? CpuFp32Gemm::kOneDnn : CpuFp32Gemm::kBlas;
}

void set_cpu_fp32_gemm(CpuFp32Gemm gemm) {
  NEXTN_CHECK(gemm == CpuFp32Gemm::kBlas || kernels::onednn_sgemm_built(), "this nextn was built without oneDNN");
  cpu_fp32_gemm_setting().store(gemm, std::memory_order_relaxed);
}

CpuFp32Gemm cpu_fp32_gemm() { return cpu_fp32_gemm_setting().load(std::memory_order_relaxed); }

bool takes_onednn(const torch::Tensor& a, const torch::Tensor& b) {
  if (cpu_fp32_gemm() != CpuFp32Gemm::kOneDnn) return false;
  if (a.dim() != 2 || b.dim() != 2 || !a.device().is_cpu() || !b.device().is_cpu()) return false;
  if (a.scalar_type() != torch::kFloat || b.scalar_type() != torch::kFloat) return false;
  return !compat::autocast_enabled(at::kCPU);
}

void matmul_2d_into(torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b, bool accumulate) {
  NEXTN_CHECK(a.dim() == 2 && b.dim() == 2 && out.dim() == 2 && a.size(1) == b.size(0) && out.size(0) == a.size(0) &&
                  out.size(1) == b.size(1),
              "matmul_2d_into: shapes ", a.sizes(), " x ", b.sizes(), " into ", out.sizes());
  if (takes_onednn(a, b) && out.scalar_type() == torch::kFloat && out.device().is_cpu()) {
    torch::NoGradGuard no_grad;
    onednn_mm_into(out, a, b, accumulate);
  } else if (out.scalar_type() != a.scalar_type()) {  // e.g. a bf16 product into a float32 buffer
    if (accumulate) {
      out.add_(torch::mm(a, b));
    } else {
      out.copy_(torch::mm(a, b));
    }
  } else if (accumulate) {
    out.addmm_(a, b);
  } else {
    torch::mm_out(out, a, b);
  }
}

torch::Tensor matmul_2d(const torch::Tensor& a, const torch::Tensor& b) {
  if (!takes_onednn(a, b)) return torch::mm(a, b);
  NEXTN_CHECK(a.size(1) == b.size(0), "matmul_2d: shapes ", a.sizes(), " x ", b.sizes());
  auto out = torch::empty({a.size(0), b.size(1)}, a.options());
  torch::NoGradGuard no_grad;
  onednn_mm_into(out, a, b, /*accumulate=*/false);
  return out;
}

}  // namespace nextn
