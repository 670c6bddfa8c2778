// The drafter's head (draft_head.h) against the model's own output head: a subset of the
// vocabulary scores exactly those rows, a bfloat16 head scores the rounded weights, candidate
// indices map back to token ids, and draft distributions land on the right ids.
#include <gtest/gtest.h>

#include "inference_test_support.h"
#include "nextn/inference/draft_head.h"
#include "nextn/kernels/few_rows_matmul.h"

namespace nextn::inference {
namespace {

torch::Tensor random_head(int64_t vocab, int64_t hidden, torch::ScalarType dtype = torch::kFloat) {
  torch::manual_seed(3);
  return torch::randn({vocab, hidden}, torch::TensorOptions().dtype(dtype));
}

// x W^T in double with W's rows rounded to bfloat16 (torch's round-to-nearest-even) or not.
torch::Tensor expected_logits(const torch::Tensor& x, const torch::Tensor& rows, bool bf16) {
  auto w = bf16 ? rows.to(torch::kBFloat16).to(torch::kDouble) : rows.to(torch::kDouble);
  return torch::matmul(x.to(torch::kDouble), w.t());
}

TEST(DraftHead, TheWholeVocabularyAtTheModelDtypeIsTheOutputHeadItself) {
  auto weight = random_head(50, 16);
  DraftHead head(weight, {});
  EXPECT_EQ(head.weight().data_ptr(), weight.data_ptr());  // no copy
  EXPECT_EQ(head.size(), 50);
  EXPECT_EQ(head.token(37), 37);
  torch::NoGradGuard no_grad;
  auto x = torch::randn({1, 1, 16});
  EXPECT_LT(testing::max_abs_diff(head.logits(x), expected_logits(x, weight, false)), 1e-5);
}

TEST(DraftHead, AVocabularyScoresItsRowsInItsOrder) {
  auto weight = random_head(50, 16);
  const std::vector<int64_t> ids = {41, 3, 17, 0, 49, 8};
  DraftHead head(weight, {ids, DraftHeadDtype::kModel});
  ASSERT_EQ(head.size(), 6);
  for (int64_t j = 0; j < 6; ++j) EXPECT_EQ(head.token(j), ids[j]);
  EXPECT_THROW(head.token(6), Error);
  torch::NoGradGuard no_grad;
  for (int64_t rows = 1; rows <= 6; ++rows) {  // the few-rows kernel to 4 rows, libtorch beyond
    auto x = torch::randn({1, rows, 16});
    auto rows_of_ids = weight.index_select(0, torch::tensor(ids, torch::kLong));
    EXPECT_LT(testing::max_abs_diff(head.logits(x), expected_logits(x, rows_of_ids, false)), 1e-5) << rows;
  }
}

TEST(DraftHead, ABf16HeadScoresTheRoundedWeightsOnEveryPath) {
  auto weight = random_head(300, 40);
  const std::vector<int64_t> ids = {299, 1, 150, 7, 42, 43, 44, 200, 3, 0, 17};
  for (bool subset : {false, true}) {
    DraftHead head(weight, {subset ? ids : std::vector<int64_t>{}, DraftHeadDtype::kBFloat16});
    EXPECT_EQ(head.weight().scalar_type(), torch::kBFloat16);
    auto rows = subset ? weight.index_select(0, torch::tensor(ids, torch::kLong)) : weight;
    for (int64_t n = 1; n <= 6; ++n) {
      auto x = torch::randn({n, 40});
      torch::Tensor got;
      {
        torch::NoGradGuard no_grad;  // decoding's case: the kernel for up to 4 rows
        got = head.logits(x);
      }
      auto expected = expected_logits(x, rows, true);
      EXPECT_LT(testing::max_abs_diff(got, expected), 1e-4) << n << " rows";
      EXPECT_GT(testing::max_abs_diff(got, expected_logits(x, rows, false)), 1e-4) << "not rounded? " << n;
      auto with_grad = head.logits(x.clone().requires_grad_(true));  // autograd: the libtorch path
      EXPECT_LT(testing::max_abs_diff(with_grad.detach(), expected), 1e-4) << n << " rows, autograd";
    }
  }
  // A double model (the tests' models) takes the libtorch path with the same rounded weights.
  auto weight64 = weight.to(torch::kDouble);
  DraftHead head64(weight64, {ids, DraftHeadDtype::kBFloat16});
  auto x = torch::randn({2, 40}, torch::kDouble);
  torch::NoGradGuard no_grad;
  EXPECT_LT(testing::max_abs_diff(head64.logits(x),
                                  expected_logits(x, weight64.index_select(0, torch::tensor(ids, torch::kLong)), true)),
            1e-10);
}

TEST(DraftHead, CandidateProbabilitiesLandOnTheirTokenIds) {
  auto weight = random_head(8, 4);
  DraftHead head(weight, {{6, 2, 7}, DraftHeadDtype::kModel});
  auto q = torch::tensor({0.5, 0.3, 0.2}, torch::kDouble);
  auto full = head.to_vocabulary(q, 8);
  auto expected = torch::tensor({0.0, 0.0, 0.3, 0.0, 0.0, 0.0, 0.5, 0.2}, torch::kDouble);
  EXPECT_TRUE(torch::equal(full, expected)) << full;
  EXPECT_THROW(head.to_vocabulary(torch::ones({4}, torch::kDouble), 8), Error);
  DraftHead whole(weight, {});
  auto p = torch::softmax(torch::randn({8}, torch::kDouble), 0);
  EXPECT_TRUE(torch::equal(whole.to_vocabulary(p, 8), p));
}

TEST(DraftHead, BadOptionsAreErrorsThatNameTheFault) {
  auto weight = random_head(10, 4);
  auto message = [&](const DraftHeadOptions& options) {
    try {
      DraftHead head(weight, options);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({{3, 10}, DraftHeadDtype::kModel}).find("token id 10 (entry 1) is outside"), std::string::npos);
  EXPECT_NE(message({{-1}, DraftHeadDtype::kModel}).find("token id -1"), std::string::npos);
  EXPECT_NE(message({{4, 2, 4}, DraftHeadDtype::kBFloat16}).find("token id 4 appears twice"), std::string::npos);
  EXPECT_EQ(parse_draft_head_dtype("bf16"), DraftHeadDtype::kBFloat16);
  EXPECT_EQ(parse_draft_head_dtype("model"), DraftHeadDtype::kModel);
  EXPECT_THROW(parse_draft_head_dtype("fp8"), Error);
}

}  // namespace
}  // namespace nextn::inference
