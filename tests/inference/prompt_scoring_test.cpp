// Scoring a prompt (inference/prompt_scoring.h) against the training forward's logits: each
// token's log-probability after the tokens before it, the most likely tokens, in chunks of any size.
#include <gtest/gtest.h>

#include "inference/inference_test_support.h"
#include "nextn/inference/cached_forward.h"
#include "nextn/inference/prompt_scoring.h"

namespace nextn::inference {
namespace {

TEST(PromptScoring, EachTokenAfterTheOnesBeforeItAsTheFullForwardGivesInAnyChunks) {
  DeepSeekV3 model = testing::random_model(testing::tiny_config(), 41, 0.3, torch::kFloat);
  const auto prompt = testing::random_prompt(11, model->config().vocab_size, 3);
  torch::NoGradGuard no_grad;
  const auto ids = torch::tensor(prompt).view({1, -1});
  const auto expected =
      torch::log_softmax(model->forward(ids, ForwardOptions{false, false}).logits[0].to(torch::kDouble), -1);
  auto cache = KvCache::for_main_model(model->config(), 1, 16, torch::TensorOptions().dtype(torch::kFloat));
  const torch::Tensor hidden = run_main_model_cached(*model, ids, cache, LogitsFor::kLastPosition).hidden;
  for (int64_t rows_per_chunk : {1, 3, 64}) {
    SCOPED_TRACE(rows_per_chunk);
    const auto scored = score_prompt(*model, hidden, prompt, 3, rows_per_chunk);
    ASSERT_EQ(scored.size(), prompt.size() - 1);
    for (size_t i = 0; i < scored.size(); ++i) {
      const auto at = static_cast<int64_t>(i);
      EXPECT_EQ(scored[i].token, prompt[i + 1]);
      EXPECT_NEAR(scored[i].logprob, expected[at][prompt[i + 1]].item<double>(), 1e-5) << "position " << i;
      auto [values, top_ids] = expected[at].topk(3);
      ASSERT_EQ(scored[i].top.size(), 3u);
      for (int64_t k = 0; k < 3; ++k) {
        EXPECT_EQ(scored[i].top[static_cast<size_t>(k)].first, top_ids[k].item<int64_t>());
        EXPECT_NEAR(scored[i].top[static_cast<size_t>(k)].second, values[k].item<double>(), 1e-5);
      }
    }
  }
  // A one-token prompt has nothing to score; hidden states of another length are refused.
  EXPECT_TRUE(score_prompt(*model, hidden.narrow(1, 0, 1), {prompt[0]}, 0).empty());
  EXPECT_THROW(score_prompt(*model, hidden, {prompt[0], prompt[1]}, 0), Error);
}

TEST(PromptScoring, ATokensLogProbabilityIsItsLogSoftmaxInDouble) {
  const auto logits = torch::tensor({1.0f, 3.0f, -2.0f, 3.0f + 1e-6f});
  const ScoredToken s = score_token(logits, 2, 2);
  // log softmax by hand: x - log(sum(exp(x))).
  double sum = 0;
  for (double x : {1.0, 3.0, -2.0, 3.0 + 1e-6}) sum += std::exp(x);
  EXPECT_NEAR(s.logprob, -2.0 - std::log(sum), 1e-6);
  ASSERT_EQ(s.top.size(), 2u);
  EXPECT_EQ(s.top[0].first, 3);
  EXPECT_EQ(s.top[1].first, 1);
  EXPECT_TRUE(score_token(logits, 0, 0).top.empty());
  EXPECT_THROW(score_token(logits, 4, 1), Error);
  EXPECT_THROW(score_token(logits, 0, -1), Error);
}

}  // namespace
}  // namespace nextn::inference
