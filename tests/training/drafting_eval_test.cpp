// Drafting acceptance on held-out prompts: where the prompts come from, that the figures add up
// every prompt's decoding, and known answers (drafts that always match: 100%).
#include <gtest/gtest.h>

#include "nextn/data/split.h"
#include "nextn/inference/generator.h"
#include "nextn/training/drafting_eval.h"
#include "nextn/util/error.h"
#include "tiny_corpus.h"

namespace nextn {
namespace {

using testing::tiny_corpus;
using testing::tiny_training_config;

DeepSeekV3 seeded_model(uint64_t seed) {
  torch::manual_seed(seed);
  DeepSeekV3 model(tiny_training_config());
  model->eval();
  return model;
}

TEST(DraftingEval, PromptsAreValidationTextSpreadEvenlyAsANaiveScanPlacesThem) {
  auto dataset = data::TokenDataset::open(tiny_corpus().dataset_dir);
  const int64_t count = 7, length = 16;
  // Every place a prompt can start, in split order, by a plain scan of the shards.
  std::vector<std::vector<int64_t>> places;
  for (const auto& shard : dataset.shards(data::Split::kValidation)) {
    std::vector<int64_t> tokens(shard.size());
    shard.copy_to(0, shard.size(), tokens.data());
    for (int64_t start = 0; start + length <= shard.size(); ++start) {
      places.emplace_back(tokens.begin() + start, tokens.begin() + start + length);
    }
  }
  ASSERT_GT(places.size(), 100u);
  auto prompts = held_out_prompts(dataset, count, length);
  ASSERT_EQ(prompts.size(), size_t(count));
  for (int64_t i = 0; i < count; ++i) {
    const size_t expected = static_cast<size_t>((i + 0.5) * places.size() / count);
    EXPECT_EQ(prompts[i], places[expected]) << "prompt " << i;
  }
  EXPECT_THROW(held_out_prompts(dataset, int64_t(places.size()) + 1, length), Error);
}

TEST(DraftingEval, TotalsAreEveryPromptsDecodingAddedUpWithItsOwnSeed) {
  auto dataset = data::TokenDataset::open(tiny_corpus().dataset_dir);
  DeepSeekV3 model = seeded_model(5);
  for (double temperature : {0.0, 1.0}) {
    DraftingEvalOptions options;
    options.prompts = 3;
    options.prompt_tokens = 8;
    options.new_tokens = 12;
    options.sampling.temperature = temperature;
    options.sampling.seed = 40;
    DraftingEvalResult result = evaluate_drafting(model, dataset, options);
    EXPECT_EQ(result.options.draft_tokens, 2) << "0 drafts means the model's MTP depth";
    // The same decoding, one prompt at a time.
    inference::Generator generator(model);
    std::vector<int64_t> drafted(2, 0), reached(2, 0), accepted(2, 0);
    int64_t steps = 0, generated = 0;
    auto prompts = held_out_prompts(dataset, 3, 8);
    for (size_t i = 0; i < prompts.size(); ++i) {
      inference::GenerationOptions g;
      g.max_new_tokens = 12;
      g.draft_tokens = 2;
      g.sampling.temperature = temperature;
      g.sampling.seed = 40 + i;
      auto stats = generator.generate(prompts[i], g).stats;
      steps += stats.steps;
      generated += stats.generated_tokens;
      for (int k = 0; k < 2; ++k) {
        drafted[k] += stats.drafted_per_depth.at(k);
        reached[k] += stats.reached_per_depth.at(k);
        accepted[k] += stats.accepted_per_depth.at(k);
      }
    }
    const auto& t = result.totals;
    EXPECT_EQ(t.generated_tokens, 3 * 12);
    EXPECT_EQ(t.generated_tokens, generated);
    EXPECT_EQ(t.steps, steps);
    EXPECT_EQ(t.drafted_per_depth, drafted);
    EXPECT_EQ(t.reached_per_depth, reached);
    EXPECT_EQ(t.accepted_per_depth, accepted);
    EXPECT_EQ(t.prompt_tokens, 3 * 8);
    EXPECT_DOUBLE_EQ(t.acceptance_rate(1), double(accepted[0]) / double(reached[0]));
  }
}

TEST(DraftingEval, DraftsThatAlwaysMatchAreAllAccepted) {
  // All weights zero: every logit is 0, so the main model and each depth pick token 0 (greedy), or
  // draw from the same uniform distribution (sampled): a draft is accepted with probability 1.
  auto dataset = data::TokenDataset::open(tiny_corpus().dataset_dir);
  DeepSeekV3 model = seeded_model(6);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.zero_();
  }
  for (double temperature : {0.0, 0.7}) {
    DraftingEvalOptions options;
    options.prompts = 2;
    options.prompt_tokens = 5;
    options.new_tokens = 10;
    options.sampling.temperature = temperature;
    const auto t = evaluate_drafting(model, dataset, options).totals;
    EXPECT_EQ(t.acceptance_rate(1), 1.0);
    EXPECT_EQ(t.acceptance_rate(2), 1.0);
    // 10 tokens: the prefill's, then 3 per step (2 drafts + the verifier's) for 3 steps.
    EXPECT_EQ(t.steps, 2 * 3);
    EXPECT_DOUBLE_EQ(t.mean_tokens_per_step(), 3.0);
  }
}

TEST(DraftingEval, BadOptionsAreNamed) {
  auto dataset = data::TokenDataset::open(tiny_corpus().dataset_dir);
  DeepSeekV3 model = seeded_model(7);
  auto message = [&](const DraftingEvalOptions& o) {
    try {
      evaluate_drafting(model, dataset, o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  DraftingEvalOptions o;
  o.draft_tokens = 3;
  EXPECT_NE(message(o).find("drafts per step must be in [1, 2]"), std::string::npos) << message(o);
  o = {};
  o.prompt_tokens = 250;
  EXPECT_NE(message(o).find("exceed the model's context"), std::string::npos) << message(o);
  o = {};
  o.prompts = 0;
  EXPECT_NE(message(o).find("number of prompts"), std::string::npos) << message(o);
  ModelConfig no_mtp = tiny_training_config();
  no_mtp.num_nextn_predict_layers = 0;
  DeepSeekV3 plain(no_mtp);
  EXPECT_THROW(evaluate_drafting(plain, dataset, DraftingEvalOptions{}), Error);
}

}  // namespace
}  // namespace nextn
