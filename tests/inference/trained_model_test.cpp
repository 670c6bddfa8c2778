// Inference on a model that nextn trained (a few seconds of the tiny preset on the Python json
// package), loaded back from its checkpoint: trained MTP modules are real drafters, so greedy
// speculative decoding accepts drafts at every depth, and must still reproduce plain greedy
// decoding token for token for many prompts and N = 1..3.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <sstream>

#include "inference_test_support.h"
#include "nextn/checkpoint/hf_checkpoint.h"
#include "nextn/data/token_counts.h"
#include "nextn/data/token_dataset.h"
#include "nextn/inference/cached_forward.h"
#include "nextn/inference/generator.h"
#include "nextn/inference/speculative_decoder.h"
#include "nextn/inference/token_ranking.h"
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
  EXPECT_GE(reached[0] - accepted[0], 10) << "depth 1 drafts were (almost) never rejected";
}

// The K tokens most frequent in the training split (FR-Spec's draft vocabulary), ranked.
std::vector<int64_t> most_frequent_training_tokens(int64_t k) {
  auto dataset = data::TokenDataset::open(tiny_corpus().dataset_dir);
  const int64_t vocab = trained_model().model->config().vocab_size;
  return rank_tokens(data::count_tokens(dataset, data::Split::kTrain, vocab), "tiny corpus", dataset.manifest().tokenizer_hash)
      .most_frequent(k);
}

TEST(TrainedModel, CheaperDraftHeadsKeepGreedyOutputAndDraftOnlyFromTheirVocabulary) {
  DeepSeekV3 model = trained_model().model;
  Generator generator(model);
  constexpr int64_t kDraftVocab = 120;
  const std::vector<int64_t> frequent = most_frequent_training_tokens(kDraftVocab);
  // Not the first ids: frequency order differs from id order here, or this would test nothing new.
  ASSERT_NE(std::vector<int64_t>(frequent.begin(), frequent.begin() + 20),
            [] { std::vector<int64_t> ids(20); std::iota(ids.begin(), ids.end(), 0); return ids; }());
  const std::vector<DraftHeadOptions> heads = {{frequent, DraftHeadDtype::kModel},
                                               {{}, DraftHeadDtype::kBFloat16},
                                               {frequent, DraftHeadDtype::kBFloat16}};
  for (const auto& head : heads) {
    int64_t accepted = 0;
    for (const auto& prompt : validation_prompts(4, 24)) {
      auto plain = generator.generate(prompt, greedy(32, 0));
      for (int64_t n = 1; n <= 2; ++n) {
        GenerationOptions options = greedy(32, n);
        options.draft_head = head;
        auto speculative = generator.generate(prompt, options);
        EXPECT_EQ(speculative.tokens, plain.tokens) << "N=" << n << ", " << head.token_ids.size() << " tokens, "
                                                    << to_string(head.dtype);
        accepted += speculative.stats.accepted_per_depth[0];
      }
    }
    EXPECT_GT(accepted, 0) << head.token_ids.size() << " tokens, " << to_string(head.dtype);
  }

  // Every draft comes from the vocabulary, and its logits are the full head's at those ids (the
  // bfloat16 head's to bfloat16 rounding of the weights).
  auto prompt = validation_prompts(1, 24).at(0);
  SpeculativeOptions options;
  options.draft_tokens = 2;
  SpeculativeDecoder full(model, options, SamplingOptions{0.0}, 64);
  full.start(prompt);
  full.step(3);
  auto ids = torch::tensor(frequent, torch::kLong);
  for (const auto& head : heads) {
    options.draft_head = head;
    SpeculativeDecoder reduced(model, options, SamplingOptions{0.0}, 64);
    reduced.start(prompt);
    for (int i = 0; i < 10; ++i) {
      reduced.step(3);
      // Greedy drafts are the vocabulary's token at each depth's best candidate.
      const auto& step = reduced.last_step();
      for (size_t k = 0; k < step.drafts.size(); ++k) {
        const int64_t best = step.draft_logits[k].argmax().item<int64_t>();
        EXPECT_EQ(step.drafts[k], head.token_ids.empty() ? best : frequent[best]) << "depth " << k + 1;
        if (!head.token_ids.empty()) {
          EXPECT_NE(std::find(frequent.begin(), frequent.end(), step.drafts[k]), frequent.end());
        }
      }
      // The first step drafts at the same position from the same input at depth 1 (later steps
      // differ: the two accept different numbers of drafts per step).
      if (i > 0) continue;
      auto expected = full.last_step().draft_logits[0];
      if (!head.token_ids.empty()) expected = expected.index_select(0, ids);
      const auto& got = reduced.last_step().draft_logits[0];
      ASSERT_EQ(got.sizes(), expected.sizes());
      const double tolerance = head.dtype == DraftHeadDtype::kBFloat16 ? 0.02 * expected.abs().max().item<double>() : 1e-4;
      EXPECT_LT(testing::max_abs_diff(got, expected), tolerance) << to_string(head.dtype);
      if (head.dtype == DraftHeadDtype::kBFloat16) {
        EXPECT_GT(testing::max_abs_diff(got, expected), 0.0);
      }
    }
  }
}

TEST(TrainedModel, DraftVocabRanksTheDataAndGenerateDraftsFromIt) {
  const TrainedModel& trained = trained_model();
  const std::string run = trained.dir.file("run");
  const std::string data = tiny_corpus().dataset_dir;
  TempDir log("draft_vocab_cli");
  std::string output;
  ASSERT_EQ(testing::run_nextn("draft-vocab --model " + run + " --data " + data, log.path(), output), 0) << output;
  const std::string ranking_path = resolve_model_dir(run) + "/" + kTokenRankingFile;
  TokenRanking written = load_token_ranking(ranking_path);
  auto dataset = data::TokenDataset::open(data);
  const int64_t vocab = trained.model->config().vocab_size;
  EXPECT_EQ(written.ranked_ids,
            rank_tokens(data::count_tokens(dataset, data::Split::kTrain, vocab), "", written.tokenizer_hash).ranked_ids);
  EXPECT_EQ(written.tokenizer_hash, dataset.manifest().tokenizer_hash);
  EXPECT_EQ(written.tokens_counted(), dataset.num_tokens(data::Split::kTrain));

  const std::string generate = "generate --model " + run + " --prompt 'def load(path):' --greedy --max-new-tokens 24 "
                               "--speculative mtp --draft 2 --compare";
  ASSERT_EQ(testing::run_nextn(generate + " --draft-vocab 100 --draft-head bf16", log.path(), output), 0) << output;
  EXPECT_NE(output.find("the 100 most frequent tokens of " + ranking_path), std::string::npos) << output;
  EXPECT_NE(output.find("outputs identical"), std::string::npos) << output;
  EXPECT_EQ(testing::run_nextn(generate + " --draft-vocab " + std::to_string(vocab + 1), log.path(), output), 1);
  EXPECT_NE(output.find("--draft-vocab " + std::to_string(vocab + 1) + " must be in [1, vocab_size="),
            std::string::npos) << output;
  // bench decode names where its V=K drafter's tokens come from, in its header and its JSON.
  const std::string bench = "bench decode --model " + run + " --new-tokens 8 --repeats 1 --max-draft 1 --draft-vocab 100";
  ASSERT_EQ(testing::run_nextn(bench, log.path(), output), 0) << output;
  EXPECT_NE(output.find("V=100: drafts from the 100 most frequent tokens of " + ranking_path), std::string::npos)
      << output;
  ASSERT_EQ(testing::run_nextn(bench + " --json", log.path(), output), 0) << output;
  int with_vocabulary = 0;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] != '{') continue;
    const auto record = nlohmann::json::parse(line);
    EXPECT_TRUE(record.at("same_output_as_plain").get<bool>()) << line;
    if (record.at("draft_vocab").get<int64_t>() == 100) {
      ++with_vocabulary;
      EXPECT_NE(record.at("draft_vocab_source").get<std::string>().find(ranking_path), std::string::npos) << line;
    } else {
      EXPECT_EQ(record.at("draft_vocab_source").get<std::string>(), "") << line;
    }
  }
  EXPECT_EQ(with_vocabulary, 1) << output;
  EXPECT_EQ(testing::run_nextn(generate + " --draft-head fp8", log.path(), output), 1);
  EXPECT_NE(output.find("'fp8'"), std::string::npos) << output;
  // A ranking of another tokenizer's ids (same size) would make drafting slow without a word.
  TokenRanking foreign = written;
  foreign.tokenizer_hash = "sha256:" + std::string(64, '0');
  save_token_ranking(ranking_path, foreign);
  EXPECT_EQ(testing::run_nextn(generate + " --draft-vocab 100", log.path(), output), 1);
  EXPECT_NE(output.find("ranks the tokens of another tokenizer"), std::string::npos) << output;
  // A damaged ranking is an error, not a silent fallback to id order.
  io::write_file_atomic(ranking_path, "{\"format\": \"nextn-token-ranking\"}");
  EXPECT_EQ(testing::run_nextn(generate + " --draft-vocab 100", log.path(), output), 1);
  EXPECT_NE(output.find("missing field"), std::string::npos) << output;
  std::filesystem::remove(ranking_path);
  ASSERT_EQ(testing::run_nextn(generate + " --draft-vocab 100", log.path(), output), 0) << output;
  EXPECT_NE(output.find("token ids [0, 100) (no draft_vocab.json"), std::string::npos) << output;
}

// bench decode --batch: batch 1 is always measured first (the reference of every ratio), every
// sequence of every batch is checked against decoding it alone, and bad sizes are refused.
TEST(TrainedModel, BenchDecodeBatchReportsEachSizeAgainstBatchOne) {
  const std::string run = trained_model().dir.file("run");
  TempDir log("bench_decode_batch");
  std::string output;
  const std::string bench = "bench decode --model " + run + " --new-tokens 6 --repeats 2 --batch 3 --batch 9";
  ASSERT_EQ(testing::run_nextn(bench + " --json", log.path(), output), 0) << output;
  std::vector<int64_t> sizes;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] != '{') continue;
    const auto record = nlohmann::json::parse(line);
    sizes.push_back(record.at("batch").get<int64_t>());
    EXPECT_TRUE(record.at("same_output_as_alone").get<bool>()) << line;
    EXPECT_GT(record.at("tokens_per_second").get<double>(), 0.0) << line;
    // tokens/s = batch x 5 steps' tokens / (5 x step time)
    EXPECT_NEAR(record.at("tokens_per_second").get<double>() * record.at("step_ms").get<double>() / 1e3,
                static_cast<double>(sizes.back()), 0.01 * static_cast<double>(sizes.back())) << line;
    if (sizes.back() == 1) { EXPECT_DOUBLE_EQ(record.at("vs_batch_one").get<double>(), 1.0); }
  }
  EXPECT_EQ(sizes, (std::vector<int64_t>{1, 3, 9}));
  ASSERT_EQ(testing::run_nextn(bench + " --profile", log.path(), output), 0) << output;
  EXPECT_NE(output.find("batch 9: 5 steps"), std::string::npos) << output;
  EXPECT_NE(output.find("decode.attention"), std::string::npos) << output;
  EXPECT_EQ(testing::run_nextn("bench decode --model " + run + " --batch 0", log.path(), output), 1);
  EXPECT_NE(output.find("--batch sizes must be >= 1, got 0"), std::string::npos) << output;
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
