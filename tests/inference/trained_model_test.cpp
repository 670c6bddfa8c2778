// Inference on a model that nextn trained (a few seconds of the tiny preset on the Python json
// package), loaded back from its checkpoint: trained MTP modules are real drafters, so greedy
// speculative decoding accepts drafts at every depth, and must still reproduce plain greedy
// decoding token for token for many prompts and N = 1..3.
#include <gtest/gtest.h>

#include "inference_test_support.h"
#include "nextn/checkpoint/hf_checkpoint.h"
#include "nextn/data/token_dataset.h"
#include "nextn/inference/cached_forward.h"
#include "nextn/inference/generator.h"
#include "nextn/inference/speculative_decoder.h"
#include "nextn/training/run_checkpoint.h"
#include "nextn/training/trainer.h"
#include "training/tiny_corpus.h"

namespace nextn::inference {
namespace {

using testing::TempDir;
using testing::tiny_corpus;

struct TrainedModel {
  TempDir dir{"trained_model"};
  DeepSeekV3 model{nullptr};
};

// Trained once per test process and shared by the cases below.
const TrainedModel& trained_model() {
  static std::unique_ptr<TrainedModel> trained = [] {
    auto t = std::make_unique<TrainedModel>();
    const std::string config_path = t->dir.file("tiny384.json");
    save_model_config(testing::tiny_training_config(), config_path);
    TrainOptions o;
    o.config_path = config_path;
    o.data_dir = tiny_corpus().dataset_dir;
    o.run_dir = t->dir.file("run");
    o.batch_size = 8;
    o.seq_len = 64;
    o.steps = 80;
    o.warmup_steps = 5;
    o.lr = 1e-2;
    o.eval_every = 0;
    o.eval_batches = 1;
    o.checkpoint_every = 0;
    o.log_every = 1000;
    train(o, /*resume=*/false);
    t->model = load_model(resolve_model_dir(o.run_dir));
    t->model->eval();
    return t;
  }();
  return *trained;
}

// Prompts cut from the validation split: real Python the model has not trained on.
std::vector<std::vector<int64_t>> validation_prompts(int count, int64_t length) {
  auto dataset = data::TokenDataset::open(tiny_corpus().dataset_dir);
  const auto& shard = dataset.shards(data::Split::kValidation).at(0);
  std::vector<std::vector<int64_t>> prompts;
  const int64_t stride = (shard.size() - length) / count;
  for (int i = 0; i < count; ++i) {
    std::vector<int64_t> prompt(static_cast<size_t>(length));
    shard.copy_to(i * stride, length, prompt.data());
    prompts.push_back(prompt);
  }
  return prompts;
}

GenerationOptions greedy(int64_t max_new, int64_t drafts) {
  GenerationOptions options;
  options.max_new_tokens = max_new;
  options.sampling.temperature = 0;
  options.draft_tokens = drafts;
  options.reuse_last_mtp_module = drafts > 2;  // the tiny preset has D = 2
  return options;
}

TEST(TrainedModel, SpeculativeGreedyEqualsPlainGreedyForManyPromptsAndDraftCounts) {
  DeepSeekV3 model = trained_model().model;
  Generator generator(model);
  std::vector<int64_t> accepted(3, 0), reached(3, 0);
  int prompt_index = 0;
  for (const auto& prompt : validation_prompts(12, 24)) {
    auto plain = generator.generate(prompt, greedy(32, 0));
    ASSERT_EQ(plain.tokens.size(), 32u);
    for (int64_t n = 1; n <= 3; ++n) {
      auto speculative = generator.generate(prompt, greedy(32, n));
      EXPECT_EQ(speculative.tokens, plain.tokens) << "N=" << n << ", prompt " << prompt_index;
      for (int64_t k = 1; k <= n; ++k) {
        accepted[k - 1] += speculative.stats.accepted_per_depth[k - 1];
        reached[k - 1] += speculative.stats.reached_per_depth[k - 1];
      }
    }
    ++prompt_index;
  }
  // A trained drafter is right often and wrong often: both branches of verification ran, at
  // every depth. (Untrained modules are almost never right; see speculative_greedy_test.)
  // (Deeper depths are reached only after acceptances and are often all accepted: only depth 1
  // is required to have rejections.)
  for (int k = 0; k < 3; ++k) {
    std::cout << "depth " << k + 1 << ": accepted " << accepted[k] << " of " << reached[k] << "\n";
    EXPECT_GT(accepted[k], reached[k] / 5) << "depth " << k + 1 << ": " << accepted[k] << " of " << reached[k];
  }
  EXPECT_LT(accepted[0], reached[0] * 9 / 10);
}

TEST(TrainedModel, AReducedDraftVocabularyKeepsGreedyOutputAndDraftsOnlyFromIt) {
  DeepSeekV3 model = trained_model().model;
  Generator generator(model);
  constexpr int64_t kDraftVocab = 300;  // specials, the 256 bytes, the first 38 merges
  int64_t accepted = 0;
  for (const auto& prompt : validation_prompts(6, 24)) {
    auto plain = generator.generate(prompt, greedy(32, 0));
    for (int64_t n = 1; n <= 2; ++n) {
      GenerationOptions options = greedy(32, n);
      options.draft_vocab_size = kDraftVocab;
      auto speculative = generator.generate(prompt, options);
      EXPECT_EQ(speculative.tokens, plain.tokens) << "N=" << n;
      accepted += speculative.stats.accepted_per_depth[0];
    }
  }
  EXPECT_GT(accepted, 0);
  // Every draft comes from the subset, and its logits are the full head's first rows.
  auto prompt = validation_prompts(1, 24).at(0);
  SpeculativeOptions options;
  options.draft_tokens = 2;
  options.draft_vocab_size = kDraftVocab;
  SpeculativeDecoder reduced(model, options, SamplingOptions{0.0}, 64);
  options.draft_vocab_size = 0;
  SpeculativeDecoder full(model, options, SamplingOptions{0.0}, 64);
  reduced.start(prompt);
  full.start(prompt);
  for (int i = 0; i < 10; ++i) {
    reduced.step(3);
    full.step(3);
    for (int64_t d : reduced.last_step().drafts) EXPECT_LT(d, kDraftVocab);
    ASSERT_EQ(reduced.last_step().draft_logits.size(1), kDraftVocab);
    // The first step drafts at the same position from the same input at depth 1 (later steps
    // differ: the two accept different numbers of drafts per step).
    if (i == 0) {
      EXPECT_LT(testing::max_abs_diff(reduced.last_step().draft_logits[0],
                                      full.last_step().draft_logits[0].narrow(0, 0, kDraftVocab)), 1e-4);
    }
  }
}

TEST(TrainedModel, CachedDecodingMatchesTheFullForwardAtEveryPosition) {
  DeepSeekV3 model = trained_model().model;
  torch::NoGradGuard no_grad;
  auto prompt = validation_prompts(1, 40).at(0);
  auto ids = torch::tensor(prompt, torch::kLong).view({1, -1});
  auto full = model->forward(ids, ForwardOptions{true, false});
  KvCache cache = KvCache::for_main_model(model->config(), 1, 40, torch::TensorOptions().dtype(torch::kFloat));
  // A prefill of 8 tokens, then one token at a time through the absorbed cache.
  auto first = run_main_model_cached(*model, ids.narrow(1, 0, 8), cache);
  EXPECT_LT(testing::max_abs_diff(first.logits, full.logits.narrow(1, 0, 8)), 1e-4);
  for (int64_t i = 8; i < 40; ++i) {
    auto step = run_main_model_cached(*model, ids.narrow(1, i, 1), cache);
    EXPECT_LT(testing::max_abs_diff(step.logits, full.logits.narrow(1, i, 1)), 1e-4) << "position " << i;
    EXPECT_LT(testing::max_abs_diff(step.hidden, full.hidden.narrow(1, i, 1)), 1e-4) << "position " << i;
  }
}

}  // namespace
}  // namespace nextn::inference
