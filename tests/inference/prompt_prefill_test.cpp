// A prompt's prefill in chunks (inference/prompt_prefill.h) against the training forward: the
// same hidden states and last logits for any chunk size; chunk bounds fixed by the prompt alone;
// the decoders' begin() / run_prefill_chunk() against start(); speculative greedy output equal to
// plain decoding's with chunked prompts; a prompt scored chunk by chunk as scored whole.
#include <gtest/gtest.h>

#include <optional>

#include "inference_test_support.h"
#include "nextn/inference/decoding_panels.h"
#include "nextn/inference/generator.h"
#include "nextn/inference/plain_decoder.h"
#include "nextn/inference/prompt_prefill.h"
#include "nextn/inference/prompt_scoring.h"
#include "nextn/kernels/few_rows_matmul.h"
#include "nextn/util/error.h"

namespace nextn::inference {
namespace {

using testing::max_abs_diff;

// The hidden states of every chunk, concatenated, and the last chunk's logits.
MainModelStep prefill_in_chunks(DeepSeekV3& model, const std::vector<int64_t>& prompt, int64_t chunk) {
  const auto& weight = model->embed_tokens->weight;
  KvCache cache = KvCache::for_main_model(model->config(), 1, static_cast<int64_t>(prompt.size()),
                                          torch::TensorOptions().dtype(weight.scalar_type()));
  PromptPrefill prefill(prompt, chunk);
  std::vector<torch::Tensor> hidden;
  torch::Tensor logits;
  while (!prefill.done()) {
    MainModelStep step = prefill.run_next_chunk(*model, cache);
    EXPECT_EQ(step.logits.defined(), prefill.done()) << "logits only after the last chunk";
    hidden.push_back(step.hidden);
    logits = step.logits;
  }
  EXPECT_EQ(cache.length(), static_cast<int64_t>(prompt.size()));
  EXPECT_EQ(static_cast<int64_t>(hidden.size()), prefill.chunks());
  return {logits, torch::cat(hidden, 1)};
}

TEST(PromptPrefill, ChunkBoundsAreFixedByThePromptAlone) {
  const std::vector<int64_t> prompt(10, 3);
  PromptPrefill prefill(prompt, 4);
  EXPECT_EQ(prefill.chunks(), 3);
  EXPECT_FALSE(prefill.done());
  EXPECT_EQ(prefill.next_chunk_tokens(), 4);
  EXPECT_EQ(prefill.next_position(), 0);
  EXPECT_EQ(PromptPrefill(prompt, 10).chunks(), 1);
  EXPECT_EQ(PromptPrefill(prompt, 11).chunks(), 1);
  EXPECT_EQ(PromptPrefill(prompt, 1).chunks(), 10);
  EXPECT_THROW(PromptPrefill(prompt, 0), Error);
  EXPECT_THROW(check_prefill_chunk(-3), Error);

  DeepSeekV3 model = testing::random_model(testing::tiny_config(), 61);
  KvCache cache = KvCache::for_main_model(model->config(), 1, 10, torch::TensorOptions().dtype(torch::kDouble));
  std::vector<int64_t> sizes, positions;
  while (!prefill.done()) {
    positions.push_back(prefill.next_position());
    sizes.push_back(prefill.next_chunk_tokens());
    prefill.run_next_chunk(*model, cache);
  }
  EXPECT_EQ(sizes, (std::vector<int64_t>{4, 4, 2}));
  EXPECT_EQ(positions, (std::vector<int64_t>{0, 4, 8}));
  EXPECT_EQ(prefill.next_chunk_tokens(), 0);
  EXPECT_THROW(prefill.run_next_chunk(*model, cache), Error);  // nothing left

  // A cache that does not hold exactly the chunks before is refused.
  PromptPrefill other(prompt, 4);
  EXPECT_THROW(other.run_next_chunk(*model, cache), Error);
}

TEST(PromptPrefill, EveryChunkSizeGivesTheFullForwardsHiddenStatesAndLogits) {
  const int64_t length = 23;
  for (ModelConfig config : {testing::tiny_config(), testing::parallel_config()}) {
    DeepSeekV3 model = testing::random_model(config, 62);
    const auto prompt = testing::random_prompt(length, config.vocab_size, 5);
    torch::NoGradGuard no_grad;
    auto full = model->forward(torch::tensor(prompt).view({1, -1}), ForwardOptions{false, false});
    // Chunks of one token, of a few (decoding's kernels), just past them (the naive form over a
    // cache), one short of the prompt, the prompt, more than the prompt.
    for (int64_t chunk : {int64_t{1}, int64_t{3}, kernels::kFewRowsMax, kernels::kFewRowsMax + 1, length - 1, length,
                          int64_t{256}}) {
      SCOPED_TRACE("chunk " + std::to_string(chunk));
      MainModelStep chunked = prefill_in_chunks(model, prompt, chunk);
      EXPECT_LT(max_abs_diff(chunked.hidden, full.hidden), 1e-10);
      EXPECT_LT(max_abs_diff(chunked.logits, full.logits.narrow(1, length - 1, 1)), 1e-10);
    }
  }
}

// In float32 the chunks run OpenBLAS's products and decoding's kernels: the same to rounding.
TEST(PromptPrefill, Float32ChunksMatchTheFullForwardToRounding) {
  DeepSeekV3 model = testing::random_model(testing::tiny_config(), 63, 0.3, torch::kFloat);
  const auto prompt = testing::random_prompt(30, model->config().vocab_size, 6);
  torch::NoGradGuard no_grad;
  auto full = model->forward(torch::tensor(prompt).view({1, -1}), ForwardOptions{false, false});
  for (int64_t chunk : {4, 9, 16, 30}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    MainModelStep chunked = prefill_in_chunks(model, prompt, chunk);
    EXPECT_LT(max_abs_diff(chunked.hidden, full.hidden), 1e-4);
    EXPECT_LT(max_abs_diff(chunked.logits, full.logits.narrow(1, 29, 1)), 1e-4);
  }
}

TEST(PromptPrefill, ADecoderRunsItsPromptChunkByChunkAsStartDoes) {
  DeepSeekV3 model = testing::random_model(testing::tiny_config(), 64, 0.3, torch::kFloat);
  const auto prompt = testing::random_prompt(19, model->config().vocab_size, 7);
  SamplingOptions greedy;
  greedy.temperature = 0;
  PlainDecoder whole(model, greedy, 40, 5);
  const std::vector<int64_t> first = whole.start(prompt);
  std::vector<int64_t> expected = first;
  for (int i = 0; i < 6; ++i) expected.push_back(whole.step(1).at(0));

  PlainDecoder chunked(model, greedy, 40, 5);
  EXPECT_THROW(chunked.step(1), Error);  // no prompt yet
  chunked.begin(prompt);
  std::vector<int64_t> sizes;
  std::optional<int64_t> token;
  while (!token) {
    EXPECT_THROW(chunked.step(1), Error) << "a step before the prompt has run";
    sizes.push_back(chunked.next_prefill_tokens());
    token = chunked.run_prefill_chunk();
  }
  EXPECT_EQ(sizes, (std::vector<int64_t>{5, 5, 5, 4}));
  EXPECT_EQ(chunked.next_prefill_tokens(), 0);
  EXPECT_THROW(chunked.run_prefill_chunk(), Error);
  std::vector<int64_t> tokens = {*token};
  for (int i = 0; i < 6; ++i) tokens.push_back(chunked.step(1).at(0));
  EXPECT_EQ(tokens, expected);
  EXPECT_EQ(chunked.tokens().size(), prompt.size() + 7);
  EXPECT_THROW(PlainDecoder(model, greedy, 40, 0), Error);
}

// Speculative decoding's main model runs the prompt in the same chunks as plain decoding, so greedy
// output stays plain decoding's for prompts longer than a chunk: in double (libtorch's formulas)
// and in float32 on decoding's panels (as generate and serve decode).
TEST(PromptPrefill, SpeculativeGreedyOutputEqualsPlainWithChunkedPrompts) {
  const auto prompt = testing::random_prompt(27, 48, 8);
  for (torch::ScalarType dtype : {torch::kDouble, torch::kFloat}) {
    DeepSeekV3 model = testing::agreeable_model(testing::small_vocab_config(48), 65);
    model->to(dtype);
    std::optional<DecodingPanels> panels;
    if (dtype == torch::kFloat) panels.emplace(model, DecodingPrecision::kFloat32);
    for (int64_t chunk : {3, 8, 9, 256}) {
      SCOPED_TRACE("chunk " + std::to_string(chunk) + (dtype == torch::kFloat ? ", float32" : ", double"));
      GenerationOptions plain;
      plain.max_new_tokens = 24;
      plain.sampling.temperature = 0;
      plain.prefill_chunk = chunk;
      GenerationOptions speculative = plain;
      speculative.draft_tokens = 2;
      const auto expected = Generator(model).generate(prompt, plain);
      const auto drafted = Generator(model).generate(prompt, speculative);
      EXPECT_EQ(drafted.tokens, expected.tokens);
      EXPECT_GT(drafted.stats.accepted_per_depth.at(0), 0) << "the drafts must be accepted sometimes to test anything";
    }
  }
  DeepSeekV3 model = testing::random_model(testing::tiny_config(), 65);
  GenerationOptions bad;
  bad.prefill_chunk = 0;
  EXPECT_THROW(Generator(model).generate(prompt, bad), Error);
}

TEST(PromptPrefill, APromptScoredChunkByChunkIsScoredAsWhole) {
  DeepSeekV3 model = testing::random_model(testing::tiny_config(), 66);
  const auto prompt = testing::random_prompt(13, model->config().vocab_size, 9);
  const MainModelStep whole = prefill_in_chunks(model, prompt, 13);
  const auto expected = score_prompt(*model, whole.hidden, prompt, 2);
  ASSERT_EQ(expected.size(), prompt.size() - 1);
  for (int64_t chunk : {1, 4, 12, 13}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    std::vector<ScoredToken> scored;
    for (int64_t first = 0; first < 13; first += chunk) {
      const int64_t span = std::min<int64_t>(chunk, 13 - first);
      for (auto& s : score_prompt_span(*model, whole.hidden.narrow(1, first, span), prompt, first, 2)) {
        scored.push_back(s);
      }
    }
    ASSERT_EQ(scored.size(), expected.size());
    for (size_t i = 0; i < scored.size(); ++i) {
      EXPECT_EQ(scored[i].token, expected[i].token);
      EXPECT_NEAR(scored[i].logprob, expected[i].logprob, 1e-12);
      ASSERT_EQ(scored[i].top.size(), 2u);
      EXPECT_EQ(scored[i].top[0].first, expected[i].top[0].first);
    }
  }
  // The prompt's last position scores nothing (it predicts the first generated token); a span past
  // the prompt is refused.
  EXPECT_TRUE(score_prompt_span(*model, whole.hidden.narrow(1, 12, 1), prompt, 12, 0).empty());
  EXPECT_THROW(score_prompt_span(*model, whole.hidden.narrow(1, 10, 3), prompt, 11, 0), Error);
}

}  // namespace
}  // namespace nextn::inference
