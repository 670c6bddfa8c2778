// Training's float32 products through oneDNN (device/cpu_gemm.h) against independent computations:
// matmul_2d_into on views against a naive loop, the linear layer's gradients and a whole model's
// loss and gradients against the same on libtorch's products.
#include <gtest/gtest.h>

#include "nextn/device/cpu_gemm.h"
#include "nextn/kernels/onednn_sgemm.h"
#include "nextn/model/batched_matmul.h"
#include "nextn/model/deepseek_v3.h"
#include "nextn/model/linear.h"
#include "nextn/model/objective.h"
#include "nextn/compat/torch_compat.h"
#include "nextn/util/error.h"
#include "test_support.h"

namespace nextn {
namespace {

using testing::max_abs_diff;
using testing::tiny_config;

// Sets the process-wide fp32 library for a scope (tests run one at a time in their process).
class ScopedGemm {
 public:
  explicit ScopedGemm(CpuFp32Gemm gemm) : previous_(cpu_fp32_gemm()) { set_cpu_fp32_gemm(gemm); }
  ~ScopedGemm() { set_cpu_fp32_gemm(previous_); }

 private:
  CpuFp32Gemm previous_;
};

torch::Tensor naive_product(const torch::Tensor& a, const torch::Tensor& b) {
  auto ad = a.to(torch::kDouble), bd = b.to(torch::kDouble);
  auto out = torch::zeros({a.size(0), b.size(1)}, torch::kDouble);
  for (int64_t i = 0; i < a.size(0); ++i) {
    for (int64_t j = 0; j < b.size(1); ++j) {
      double sum = 0;
      for (int64_t p = 0; p < a.size(1); ++p) sum += ad[i][p].item<double>() * bd[p][j].item<double>();
      out[i][j] = sum;
    }
  }
  return out;
}

TEST(CpuGemm, ProductsOfViewsMatchANaiveLoop) {
  if (!kernels::onednn_sgemm_built()) GTEST_SKIP() << "built without oneDNN";
  ScopedGemm gemm(CpuFp32Gemm::kOneDnn);
  torch::manual_seed(21);
  const auto m = torch::randn({40, 40});
  const auto a_plain = m.narrow(0, 0, 9).narrow(1, 0, 11);        // [9, 11], leading dimension 40
  const auto a_t = m.narrow(0, 0, 11).narrow(1, 0, 9).t();        // [9, 11], a transposed view
  const auto b_plain = m.narrow(0, 5, 11).narrow(1, 3, 13);       // [11, 13]
  const auto b_t = m.narrow(0, 7, 13).narrow(1, 2, 11).t();       // [11, 13], a transposed view
  struct Case {
    const char* name;
    torch::Tensor a, b;
  };
  // Row-major, transposed, and a column view that is neither (copied first).
  std::vector<Case> cases = {{"plain", a_plain, b_plain},
                             {"a transposed", a_t, b_plain},
                             {"b transposed", a_plain, b_t},
                             {"both transposed", a_t, b_t},
                             {"strided columns", m.slice(1, 0, 33, 3), b_plain}};
  for (auto& c : cases) {
    ASSERT_TRUE(takes_onednn(c.a, c.b)) << c.name;
    auto expected = naive_product(c.a, c.b);
    EXPECT_LT(max_abs_diff(matmul_2d(c.a, c.b), expected), 1e-4) << c.name;
    // Into a view of a larger buffer, overwritten then accumulated; the rest untouched.
    auto buffer = torch::full({c.a.size(0) + 2, c.b.size(1) + 3}, 5.0);
    auto out = buffer.narrow(0, 1, c.a.size(0)).narrow(1, 2, c.b.size(1));
    matmul_2d_into(out, c.a, c.b);
    EXPECT_LT(max_abs_diff(out, expected), 1e-4) << c.name;
    matmul_2d_into(out, c.a, c.b, /*accumulate=*/true);
    EXPECT_LT(max_abs_diff(out, 2 * expected), 2e-4) << c.name;
    EXPECT_TRUE(torch::all(buffer.narrow(0, 0, 1) == 5.0).item<bool>()) << c.name;
    EXPECT_TRUE(torch::all(buffer.narrow(1, 0, 2) == 5.0).item<bool>()) << c.name;
    // Into a transposed view (written through a copy).
    auto out_t = torch::zeros({c.b.size(1), c.a.size(0)});
    auto view = out_t.t();
    matmul_2d_into(view, c.a, c.b);
    EXPECT_LT(max_abs_diff(out_t.t(), expected), 1e-4) << c.name;
  }
  // An empty inner dimension: zeros, or the accumulator unchanged.
  auto out = torch::full({3, 4}, 2.0);
  matmul_2d_into(out, torch::empty({3, 0}), torch::empty({0, 4}));
  EXPECT_TRUE(torch::all(out == 0).item<bool>());
}

TEST(CpuGemm, OnlyFloat32OutsideAutocastTakesOneDnn) {
  if (!kernels::onednn_sgemm_built()) GTEST_SKIP() << "built without oneDNN";
  auto a = torch::randn({4, 5}), b = torch::randn({5, 6});
  {
    ScopedGemm gemm(CpuFp32Gemm::kBlas);
    EXPECT_FALSE(takes_onednn(a, b));
  }
  ScopedGemm gemm(CpuFp32Gemm::kOneDnn);
  EXPECT_TRUE(takes_onednn(a, b));
  EXPECT_FALSE(takes_onednn(a.to(torch::kBFloat16), b.to(torch::kBFloat16)));
  EXPECT_FALSE(takes_onednn(a.to(torch::kDouble), b.to(torch::kDouble)));
  EXPECT_FALSE(takes_onednn(a.unsqueeze(0), b));
  compat::enter_autocast(at::kCPU, torch::kBFloat16);
  const bool under_autocast = takes_onednn(a, b);
  compat::exit_autocast(at::kCPU, false);
  EXPECT_FALSE(under_autocast);
  EXPECT_EQ(cpu_fp32_gemm_from_string("onednn"), CpuFp32Gemm::kOneDnn);
  EXPECT_EQ(cpu_fp32_gemm_from_string("blas"), CpuFp32Gemm::kBlas);
  EXPECT_THROW(cpu_fp32_gemm_from_string("mkl"), Error);
}

TEST(CpuGemm, LinearGradientsEqualLibtorchsLinear) {
  if (!kernels::onednn_sgemm_built()) GTEST_SKIP() << "built without oneDNN";
  torch::manual_seed(22);
  const auto x0 = torch::randn({2, 9, 16}), w0 = torch::randn({10, 16}), upstream = torch::randn({2, 9, 10});
  for (bool x_needs_grad : {true, false}) {
    auto run = [&](CpuFp32Gemm library) {
      ScopedGemm gemm(library);
      auto x = x0.clone().requires_grad_(x_needs_grad);
      auto w = w0.clone().requires_grad_(true);
      auto y = linear_no_bias(x, w);
      (y * upstream).sum().backward();
      return std::make_tuple(y.detach(), x_needs_grad ? x.grad() : torch::Tensor(), w.grad());
    };
    auto [y_ref, gx_ref, gw_ref] = run(CpuFp32Gemm::kBlas);
    auto [y, gx, gw] = run(CpuFp32Gemm::kOneDnn);
    ASSERT_EQ(y.sizes(), y_ref.sizes());
    EXPECT_LT(max_abs_diff(y, y_ref), 1e-4);
    EXPECT_LT(max_abs_diff(gw, gw_ref), 1e-4);
    ASSERT_EQ(gx.defined(), x_needs_grad);
    if (x_needs_grad) { EXPECT_LT(max_abs_diff(gx, gx_ref), 1e-4); }
  }
}

TEST(CpuGemm, AttentionsBatchedProductsAndGradientsEqualTorchMatmul) {
  // Transposed views as attention passes them, and a b shared by every head (MLA's rope key).
  if (!kernels::onednn_sgemm_built()) GTEST_SKIP() << "built without oneDNN";
  torch::manual_seed(23);
  const auto a0 = torch::randn({2, 5, 3, 7}), b_full = torch::randn({2, 5, 7, 6}), b_shared = torch::randn({2, 6, 1, 7});
  for (bool shared : {false, true}) {
    auto run = [&](CpuFp32Gemm library) {
      ScopedGemm gemm(library);
      auto a_leaf = a0.clone().requires_grad_(true);
      auto b_leaf = (shared ? b_shared : b_full).clone().requires_grad_(true);
      auto a = a_leaf.transpose(1, 2);                                     // [2, 3, 5, 7], not contiguous
      auto b = shared ? b_leaf.transpose(1, 2).transpose(-1, -2) : b_leaf.narrow(1, 2, 3);  // [2, 1 or 3, 7, 6]
      auto out = batched_matmul(a, b);
      (out * torch::linspace(-1, 1, out.numel()).view(out.sizes())).sum().backward();
      return std::make_tuple(out.detach(), a_leaf.grad(), b_leaf.grad());
    };
    auto [out_ref, ga_ref, gb_ref] = run(CpuFp32Gemm::kBlas);  // torch::matmul and its autograd
    auto [out, ga, gb] = run(CpuFp32Gemm::kOneDnn);
    ASSERT_EQ(out.sizes(), out_ref.sizes());
    EXPECT_LT(max_abs_diff(out, out_ref), 1e-5) << shared;
    EXPECT_LT(max_abs_diff(ga, ga_ref), 1e-5) << shared;
    EXPECT_LT(max_abs_diff(gb, gb_ref), 1e-5) << shared;
    EXPECT_GT(gb.abs().sum().item<double>(), 1.0);
  }
}

TEST(CpuGemm, AModelsLossAndEveryGradientMatchLibtorchsProducts) {
  // Every product a training step takes on oneDNN (linear layers, the routed experts' forward and
  // backward, the fused head and its gradients) at once, against the same step on libtorch's.
  if (!kernels::onednn_sgemm_built()) GTEST_SKIP() << "built without oneDNN";
  ModelConfig config = tiny_config();
  auto step = [&](CpuFp32Gemm library) {
    ScopedGemm gemm(library);
    torch::manual_seed(4);
    DeepSeekV3 model(config);
    torch::manual_seed(5);
    auto window = torch::randint(config.vocab_size, {3, 17}, torch::kLong);
    auto out = model->forward(window.narrow(1, 0, 16), ForwardOptions{true, true, true});
    ObjectiveOptions options;
    options.sequence_balance_alpha = 1e-4;
    ObjectiveOutput obj = compute_objective(out, window.narrow(1, 1, 16), torch::Tensor(), options);
    obj.total.backward();
    std::vector<torch::Tensor> grads;
    for (auto& p : model->parameters()) grads.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
    return std::make_pair(obj.total.item<double>(), grads);
  };
  auto [loss_ref, grads_ref] = step(CpuFp32Gemm::kBlas);
  auto [loss, grads] = step(CpuFp32Gemm::kOneDnn);
  EXPECT_NEAR(loss, loss_ref, 1e-5 * std::abs(loss_ref));
  ASSERT_EQ(grads.size(), grads_ref.size());
  int compared = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    ASSERT_EQ(grads[i].defined(), grads_ref[i].defined()) << "parameter " << i;
    if (!grads[i].defined()) continue;
    const double scale = grads_ref[i].abs().max().item<double>();
    EXPECT_LT(max_abs_diff(grads[i], grads_ref[i]), 1e-4 * scale + 1e-7) << "parameter " << i;
    ++compared;
  }
  EXPECT_GT(compared, 20);
}

}  // namespace
}  // namespace nextn
