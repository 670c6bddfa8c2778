// `bench decode --repeating`: random weights made to repeat the prompt's last token, which every
// MTP depth then drafts (bench/repeating_model.h). Checked by generating: the output is that token
// over and over, and speculative decoding accepts every draft, sequential modules and parallel heads.
#include <gtest/gtest.h>

#include "inference/inference_test_support.h"
#include "nextn/bench/repeating_model.h"
#include "nextn/inference/generator.h"

namespace nextn {
namespace {

void expect_repeats_with_every_draft_accepted(ModelConfig config) {
  config.num_nextn_predict_layers = 2;
  torch::manual_seed(5);
  DeepSeekV3 model(config);  // the default initialisation, as bench decode's --config
  make_model_repeat(model);
  model->eval();
  const auto prompt = testing::random_prompt(9, config.vocab_size, 3);
  inference::GenerationOptions options;
  options.max_new_tokens = 25;
  options.sampling.temperature = 0;  // greedy
  inference::Generator generator(model);
  const auto plain = generator.generate(prompt, options);
  EXPECT_EQ(plain.tokens, std::vector<int64_t>(25, prompt.back()));

  options.draft_tokens = 2;
  const auto speculative = generator.generate(prompt, options);
  EXPECT_EQ(speculative.tokens, plain.tokens);
  const auto& s = speculative.stats;
  ASSERT_EQ(s.drafted_per_depth.size(), 2u);
  EXPECT_GT(s.drafted_per_depth[1], 0);
  EXPECT_EQ(s.accepted_per_depth, s.drafted_per_depth);
  EXPECT_DOUBLE_EQ(s.mean_tokens_per_step(), 3.0);
}

TEST(RepeatingModel, RepeatsTheLastTokenAndEveryDraftIsAccepted) {
  expect_repeats_with_every_draft_accepted(testing::tiny_config());
}

TEST(RepeatingModel, ParallelHeadsDraftTheRepetitionToo) {
  ModelConfig config = testing::tiny_config();
  config.mtp_kind = MtpKind::kParallel;
  expect_repeats_with_every_draft_accepted(config);
}

// Without the change the same model does not repeat: the test above is about the construction.
TEST(RepeatingModel, ARandomModelDoesNotRepeat) {
  torch::manual_seed(5);
  DeepSeekV3 model(testing::tiny_config());
  model->eval();
  const auto prompt = testing::random_prompt(9, model->config().vocab_size, 3);
  inference::GenerationOptions options;
  options.max_new_tokens = 25;
  options.sampling.temperature = 0;  // greedy
  const auto plain = inference::Generator(model).generate(prompt, options);
  EXPECT_NE(plain.tokens, std::vector<int64_t>(25, prompt.back()));
  EXPECT_EQ(inference::Generator(model).generate(prompt, options).tokens, plain.tokens);
  options.draft_tokens = 2;
  EXPECT_EQ(inference::Generator(model).generate(prompt, options).tokens, plain.tokens);
}

}  // namespace
}  // namespace nextn
