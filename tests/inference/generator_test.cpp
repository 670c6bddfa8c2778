// The generator: plain decoding against the full forward, stop conditions, the context limits,
// seeds, statistics.
#include <gtest/gtest.h>

#include "inference_test_support.h"
#include "nextn/inference/generator.h"
#include "nextn/inference/plain_decoder.h"
#include "nextn/util/error.h"
#include "nextn/util/runtime_info.h"

namespace nextn::inference {
namespace {

using testing::random_model;
using testing::random_prompt;
using testing::tiny_config;

GenerationOptions greedy(int64_t max_new) {
  GenerationOptions options;
  options.max_new_tokens = max_new;
  options.sampling.temperature = 0;
  return options;
}

TEST(Generator, PlainGreedyEqualsArgmaxOfTheFullForwardEachStep) {
  DeepSeekV3 model = random_model(tiny_config(), 81);
  Generator generator(model);
  auto prompt = random_prompt(5, 128, 82);
  auto result = generator.generate(prompt, greedy(10));
  ASSERT_EQ(result.tokens.size(), 10u);
  std::vector<int64_t> sequence = prompt;
  for (int64_t expected : result.tokens) {
    auto logits = model->forward(torch::tensor(sequence, torch::kLong).view({1, -1}), ForwardOptions{false, false}).logits;
    EXPECT_EQ(logits[0][-1].argmax().item<int64_t>(), expected);
    sequence.push_back(expected);
  }
  EXPECT_EQ(result.stop_reason, StopReason::kMaxNewTokens);
  EXPECT_EQ(result.stats.prompt_tokens, 5);
  EXPECT_EQ(result.stats.generated_tokens, 10);
  EXPECT_EQ(result.stats.steps, 9);
  EXPECT_DOUBLE_EQ(result.stats.mean_tokens_per_step(), 1.0);
  EXPECT_GT(result.stats.tokens_per_second(), 0.0);
}

TEST(Generator, StopTokenEndsGenerationAndIsKept) {
  DeepSeekV3 model = random_model(tiny_config(), 83);
  Generator generator(model);
  auto prompt = random_prompt(4, 128, 84);
  auto free_run = generator.generate(prompt, greedy(12));
  for (int64_t drafts : {0, 2}) {
    auto options = greedy(12);
    options.draft_tokens = drafts;
    options.stop_token_ids = {free_run.tokens[5]};
    auto stopped = generator.generate(prompt, options);
    EXPECT_EQ(stopped.stop_reason, StopReason::kStopToken);
    // Up to and including the first occurrence of that token.
    auto first = std::find(free_run.tokens.begin(), free_run.tokens.end(), free_run.tokens[5]);
    EXPECT_EQ(stopped.tokens, std::vector<int64_t>(free_run.tokens.begin(), first + 1)) << "drafts " << drafts;
  }
}

TEST(Generator, CallbackSeesEveryTokenAndCanStop) {
  DeepSeekV3 model = random_model(tiny_config(), 85);
  Generator generator(model);
  auto prompt = random_prompt(3, 128, 86);
  for (int64_t drafts : {0, 2}) {
    std::vector<int64_t> seen;
    auto options = greedy(20);
    options.draft_tokens = drafts;
    auto result = generator.generate(prompt, options, [&](int64_t token) {
      seen.push_back(token);
      return seen.size() < 7;  // a stop string would be matched here on decoded text
    });
    EXPECT_EQ(result.stop_reason, StopReason::kCallback);
    EXPECT_EQ(result.tokens.size(), 7u);
    EXPECT_EQ(seen, result.tokens);
    EXPECT_EQ(result.stats.generated_tokens, 7);
  }
}

TEST(Generator, DecodingStepsRunWithOneBlasThreadAndTheCountIsRestored) {
  if (blas_threads() == 0) GTEST_SKIP() << "the BLAS is not OpenBLAS";
  ScopedBlasThreads two(2);  // the prefill and everything outside decoding keep this
  DeepSeekV3 model = random_model(tiny_config(), 87);
  Generator generator(model);
  auto prompt = random_prompt(3, 128, 88);
  for (int64_t drafts : {0, 2}) {
    std::vector<int> threads_seen;  // at each token: the prefill's, then the decoding steps'
    auto options = greedy(6);
    options.draft_tokens = drafts;
    generator.generate(prompt, options, [&](int64_t) {
      threads_seen.push_back(blas_threads());
      return true;
    });
    ASSERT_GE(threads_seen.size(), 2u);
    EXPECT_EQ(threads_seen.front(), 2) << "drafts " << drafts;
    for (size_t i = 1; i < threads_seen.size(); ++i) {
      EXPECT_EQ(threads_seen[i], 1) << "drafts " << drafts << ", token " << i;
    }
    EXPECT_EQ(blas_threads(), 2) << "drafts " << drafts;
  }
  // Restored on the way out of an error in a decoding step too.
  int tokens = 0;
  EXPECT_THROW(generator.generate(prompt, greedy(6),
                                  [&](int64_t) -> bool {
                                    if (++tokens == 3) throw std::runtime_error("stop");
                                    return true;
                                  }),
               std::runtime_error);
  EXPECT_EQ(blas_threads(), 2);
}

TEST(Generator, PromptLongerThanTheContextIsAnErrorUnlessTruncationIsAsked) {
  ModelConfig config = tiny_config();
  config.max_position_embeddings = 16;
  DeepSeekV3 model = random_model(config, 87);
  Generator generator(model);
  auto prompt = random_prompt(20, 128, 88);
  EXPECT_THROW(generator.generate(prompt, greedy(4)), Error);
  try {
    generator.generate(prompt, greedy(4));
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("truncate"), std::string::npos) << e.what();
  }
  auto options = greedy(4);
  options.truncate_long_prompt = true;
  auto truncated = generator.generate(prompt, options);
  EXPECT_EQ(truncated.prompt_tokens_dropped, 8);  // 12 kept + 4 new = 16
  EXPECT_EQ(truncated.tokens.size(), 4u);
  // Same as generating from the last 12 tokens.
  auto direct = generator.generate(std::vector<int64_t>(prompt.end() - 12, prompt.end()), greedy(4));
  EXPECT_EQ(truncated.tokens, direct.tokens);

  // A prompt that fits but leaves less room than max_new_tokens runs until the context is full.
  for (int64_t drafts : {0, 2}) {
    auto long_run = greedy(100);
    long_run.draft_tokens = drafts;
    auto full = generator.generate(std::vector<int64_t>(prompt.begin(), prompt.begin() + 10), long_run);
    EXPECT_EQ(full.stop_reason, StopReason::kContextFull);
    EXPECT_EQ(full.tokens.size(), 6u);
  }
  auto small_context = greedy(100);
  small_context.context_length = 12;
  EXPECT_EQ(generator.generate({1, 2, 3}, small_context).tokens.size(), 9u);
  small_context.context_length = 17;  // beyond max_position_embeddings
  EXPECT_THROW(generator.generate({1, 2, 3}, small_context), Error);
}

TEST(Generator, BadInputsAreErrors) {
  DeepSeekV3 model = random_model(tiny_config(), 89);
  Generator generator(model);
  EXPECT_THROW(generator.generate({}, greedy(4)), Error);
  EXPECT_THROW(generator.generate({1, 128}, greedy(4)), Error);  // outside the vocabulary
  EXPECT_THROW(generator.generate({1, -1}, greedy(4)), Error);
  auto options = greedy(4);
  options.stop_token_ids = {500};
  EXPECT_THROW(generator.generate({1}, options), Error);
  options = greedy(-1);
  EXPECT_THROW(generator.generate({1}, options), Error);
  EXPECT_TRUE(generator.generate({1}, greedy(0)).tokens.empty());
}

TEST(Generator, SeedsReproduceSamplingAndDifferentSeedsDiffer) {
  DeepSeekV3 model = random_model(tiny_config(), 90, 0.3);
  Generator generator(model);
  auto prompt = random_prompt(4, 128, 91);
  for (int64_t drafts : {0, 2}) {
    GenerationOptions options;
    options.max_new_tokens = 16;
    options.sampling.temperature = 1.0;
    options.sampling.top_k = 50;
    options.sampling.seed = 17;
    options.draft_tokens = drafts;
    auto a = generator.generate(prompt, options);
    auto b = generator.generate(prompt, options);
    options.sampling.seed = 18;
    auto c = generator.generate(prompt, options);
    EXPECT_EQ(a.tokens, b.tokens);
    EXPECT_NE(a.tokens, c.tokens);
  }
}

TEST(Generator, SpeculativeStatisticsAddUp) {
  DeepSeekV3 model = testing::agreeable_model(tiny_config(), 92);
  Generator generator(model);
  auto options = greedy(40);
  options.draft_tokens = 2;
  auto result = generator.generate(random_prompt(6, 128, 93), options);
  const DecodeStats& s = result.stats;
  EXPECT_EQ(s.draft_tokens, 2);
  EXPECT_EQ(s.generated_tokens, 40);
  EXPECT_EQ(s.step_tokens, 39);
  int64_t accepted = 0;
  for (int64_t a : s.accepted_per_depth) accepted += a;
  EXPECT_EQ(s.step_tokens, accepted + s.steps);  // each step: accepted drafts + one target token
  EXPECT_DOUBLE_EQ(s.mean_tokens_per_step(), static_cast<double>(accepted + s.steps) / s.steps);
  EXPECT_LE(s.reached_per_depth[1], s.accepted_per_depth[0]);  // depth 2 is examined only after depth 1 passed
  EXPECT_EQ(s.reached_per_depth[0], s.drafted_per_depth[0]);
  EXPECT_GE(s.acceptance_rate(1), 0.0);
  EXPECT_LE(s.acceptance_rate(1), 1.0);
  EXPECT_NEAR(s.decode_seconds, s.draft_seconds + s.verify_seconds, 1e-9);
  EXPECT_NE(s.summary().find("depth 2"), std::string::npos);
}

}  // namespace
}  // namespace nextn::inference
