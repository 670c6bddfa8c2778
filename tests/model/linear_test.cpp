// The bias-free linear layer: its matrix-vector path for decoding's few rows and its matrix-matrix
// path against a naive double-precision loop, autograd, and torch::nn::Linear's initialisation.
#include <gtest/gtest.h>

#include "nextn/model/linear.h"
#include "test_support.h"

namespace nextn {
namespace {

using testing::max_abs_diff;

// y[r][o] = sum_k x[r][k] w[o][k] in double, one element at a time.
torch::Tensor naive_linear(const torch::Tensor& x2d, const torch::Tensor& weight) {
  auto x = x2d.to(torch::kDouble).contiguous();
  auto w = weight.to(torch::kDouble).contiguous();
  auto y = torch::zeros({x.size(0), w.size(0)}, torch::kDouble);
  auto xa = x.accessor<double, 2>();
  auto wa = w.accessor<double, 2>();
  auto ya = y.accessor<double, 2>();
  for (int64_t r = 0; r < x.size(0); ++r) {
    for (int64_t o = 0; o < w.size(0); ++o) {
      double sum = 0;
      for (int64_t k = 0; k < w.size(1); ++k) sum += xa[r][k] * wa[o][k];
      ya[r][o] = sum;
    }
  }
  return y;
}

TEST(Linear, FewAndManyRowsMatchANaiveLoop) {
  torch::manual_seed(3);
  torch::NoGradGuard no_grad;
  auto weight = torch::randn({37, 24});
  for (int64_t rows = 1; rows <= kFewRowsMaxRows + 3; ++rows) {
    auto x = torch::randn({rows, 24});
    auto expected = naive_linear(x, weight);
    auto y2 = linear_no_bias(x, weight);
    ASSERT_EQ(y2.sizes(), (std::vector<int64_t>{rows, 37}));
    EXPECT_LT(max_abs_diff(y2, expected), 1e-5) << rows << " rows";
    // [1, rows, in] as in the decoder, with the leading dimensions kept.
    auto y3 = linear_no_bias(x.unsqueeze(0), weight);
    ASSERT_EQ(y3.sizes(), (std::vector<int64_t>{1, rows, 37}));
    EXPECT_LT(max_abs_diff(y3[0], expected), 1e-5) << rows << " rows, 3-D";
  }
}

TEST(Linear, RowsOfASlicedWeight) {
  // The drafter's reduced vocabulary: the first rows of the output head, a view.
  torch::manual_seed(4);
  torch::NoGradGuard no_grad;
  auto head = torch::randn({50, 16});
  auto subset = head.narrow(0, 0, 20);
  auto x = torch::randn({1, 1, 16});
  auto y = linear_no_bias(x, subset);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{1, 1, 20}));
  EXPECT_LT(max_abs_diff(y[0], naive_linear(x[0], subset)), 1e-5);
}

TEST(Linear, OutIntoAViewLeavesTheRestOfTheBuffer) {
  torch::manual_seed(5);
  auto weight = torch::randn({12, 8});
  for (int64_t rows = 1; rows <= kFewRowsMaxRows + 2; ++rows) {
    auto buffer = torch::full({rows + 4, 12}, 7.0);
    auto x = torch::randn({rows, 8});
    linear_no_bias_out(buffer.narrow(0, 2, rows), x, weight);
    EXPECT_LT(max_abs_diff(buffer.narrow(0, 2, rows), naive_linear(x, weight)), 1e-5) << rows;
    EXPECT_TRUE(torch::all(buffer.narrow(0, 0, 2) == 7.0).item<bool>());
    EXPECT_TRUE(torch::all(buffer.narrow(0, rows + 2, 2) == 7.0).item<bool>());
  }
}

TEST(Linear, GradientsFlowForOneRowInTraining) {
  // With autograd on, one row must take the differentiable path: dL/dW = x for L = sum(y).
  torch::manual_seed(6);
  Linear layer(8, 5);
  auto x = torch::randn({1, 8});
  layer(x).sum().backward();
  ASSERT_TRUE(layer->weight.grad().defined());
  EXPECT_LT(max_abs_diff(layer->weight.grad(), x.expand({5, 8})), 1e-6);
}

TEST(Linear, InitialisesLikeTorchLinear) {
  // Same seed, same weights as torch::nn::Linear: runs seeded before this layer existed draw the
  // same initial model.
  torch::manual_seed(7);
  Linear ours(24, 10);
  torch::manual_seed(7);
  torch::nn::Linear theirs(torch::nn::LinearOptions(24, 10).bias(false));
  EXPECT_TRUE(torch::equal(ours->weight, theirs->weight));
  auto params = ours->named_parameters();
  ASSERT_EQ(params.size(), 1u);
  EXPECT_EQ(params.begin()->key(), "weight");
}

}  // namespace
}  // namespace nextn
