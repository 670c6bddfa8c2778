// Which library computes float32 matrix products on CPU: libtorch's BLAS (OpenBLAS on Debian) or
// oneDNN's sgemm (kernels/onednn_sgemm.h). Training takes oneDNN where the build has it (1.5-2x the
// products of a `small` step on OpenBLAS's AVX2 kernels, docs/BENCHMARKS.md); inference keeps
// BLAS for prefill and its own few-rows kernel for decoding. The products below are the model's
// 2-D float32 products (linear layers, the routed experts, the fused head); attention's batched
// products stay with libtorch.
#pragma once

#include <torch/torch.h>

#include <string>

namespace nextn {

enum class CpuFp32Gemm { kBlas, kOneDnn };

CpuFp32Gemm cpu_fp32_gemm_from_string(const std::string& name);  // "blas" | "onednn", else a nextn::Error
std::string to_string(CpuFp32Gemm gemm);
// oneDNN when this build has it (kernels::onednn_sgemm_built()), else BLAS.
CpuFp32Gemm default_training_fp32_gemm();

// Process-wide: the library the products below take for float32 on CPU. Starts as BLAS;
// use_cpu_training_threads (device/precision.h) sets it for training. oneDNN runs on libtorch's
// intra-op (OpenMP) threads, BLAS on its own: set the threads to match (set_cpu_threads).
void set_cpu_fp32_gemm(CpuFp32Gemm gemm);
CpuFp32Gemm cpu_fp32_gemm();

// Whether a product of these operands (and `out`, when given) takes oneDNN: the setting is oneDNN,
// all are float32 on CPU, 2-D, and no autocast changes the product's type on CPU.
bool takes_onednn(const torch::Tensor& a, const torch::Tensor& b);

// out [m, n] = a [m, k] b [k, n] (out += a b with `accumulate`); a and b may be transposed views
// (a.t() of a contiguous matrix costs no copy), out any 2-D view. Not recorded by autograd: for the
// forward and backward of autograd Functions and for no-grad code. Elsewhere than takes_onednn,
// libtorch's mm_out / addmm_ (the reference); an `out` of another type than a's gets the product
// converted (a bf16 product summed into a float32 buffer).
void matmul_2d_into(torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b, bool accumulate = false);
torch::Tensor matmul_2d(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace nextn
