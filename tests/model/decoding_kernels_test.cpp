// Decoding's few float32 rows take plain-loop kernels in RMSNorm, routing and MLA attention; the
// libtorch formulas stay the reference (and what training runs). RMSNorm against its reference,
// and the conditions under which the reference must keep running (autograd, other rows). The
// routing kernel is tested in routing_test.cpp, MLA's in tests/inference/cached_forward_test.cpp.
#include <gtest/gtest.h>


#include "nextn/model/linear.h"
#include "nextn/model/mla_attention.h"
#include "nextn/model/rms_norm.h"
#include "nextn/model/router.h"
#include "test_support.h"

namespace nextn {
namespace {

using testing::max_abs_diff;
using testing::tiny_config;

TEST(DecodingKernels, RmsNormOfFewRowsEqualsTheReference) {
  torch::manual_seed(41);
  RMSNorm norm(48, 1e-6);
  torch::nn::init::normal_(norm->weight, 1.0, 0.3);
  torch::NoGradGuard no_grad;
  for (auto shape : {std::vector<int64_t>{1, 1, 48}, {1, 4, 48}, {2, 2, 48}, {3, 48}}) {
    auto x = torch::randn(shape) * 2;
    ASSERT_TRUE(takes_few_rows_kernels(x, norm->weight, 48)) << x.sizes();
    auto fast = norm(x);
    auto reference = rms_norm_reference(x, norm->weight, 1e-6);
    ASSERT_EQ(fast.sizes(), x.sizes());
    EXPECT_LT(max_abs_diff(fast, reference), 2e-6) << x.sizes();
    EXPECT_GT(fast.abs().max().item<double>(), 0.1);
  }
}

TEST(DecodingKernels, FewRowsUnderAutogradTakeTheReference) {
  // In grad mode a one-row forward must reach the graph, whichever side wants the gradient.
  for (bool x_grad : {true, false}) {
    for (bool weight_grad : {true, false}) {
      if (!x_grad && !weight_grad) continue;
      RMSNorm norm(8, 1e-6);
      norm->weight.set_requires_grad(weight_grad);
      auto x = torch::randn({1, 1, 8}).set_requires_grad(x_grad);
      EXPECT_FALSE(takes_few_rows_kernels(x, norm->weight, 8));
      norm(x).pow(2).sum().backward();
      EXPECT_EQ(x.grad().defined(), x_grad);
      if (weight_grad) {
        EXPECT_GT(norm->weight.grad().abs().sum().item<double>(), 0.0);
      }
      if (x_grad) {
        EXPECT_GT(x.grad().abs().sum().item<double>(), 0.0);
      }
    }
  }
  ModelConfig c = tiny_config();
  MoeGate gate(c);
  torch::nn::init::normal_(gate->weight, 0.0, 0.5);
  Routing routing = gate(torch::randn({2, c.hidden_size}));
  routing.weights.sum().backward();
  ASSERT_TRUE(gate->weight.grad().defined());
  EXPECT_GT(gate->weight.grad().abs().sum().item<double>(), 0.0);
}

TEST(DecodingKernels, OnlyDecodingsRowsTakeTheKernels) {
  auto weight = torch::ones({8});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(takes_few_rows_kernels(torch::zeros({4, 8}), weight, 8));
  EXPECT_FALSE(takes_few_rows_kernels(torch::zeros({5, 8}), weight, 8));                    // a prefill
  EXPECT_FALSE(takes_few_rows_kernels(torch::zeros({2, 8}, torch::kDouble), weight, 8));     // another type
  EXPECT_FALSE(takes_few_rows_kernels(torch::zeros({8, 2}).t(), weight, 8));                 // strided rows
  EXPECT_FALSE(takes_few_rows_kernels(torch::zeros({2, 7}), weight, 8));                     // another width
}

}  // namespace
}  // namespace nextn
