// Greedy speculative decoding must reproduce plain greedy decoding token for token, for both MTP
// kinds and every draft count, and leave every cache as if the rejected drafts never existed.
#include <gtest/gtest.h>

#include <optional>

#include "inference_test_support.h"
#include "nextn/inference/batched_forward.h"
#include "nextn/inference/cached_forward.h"
#include "nextn/inference/decoding_panels.h"
#include "nextn/inference/draft_tree.h"
#include "nextn/inference/generator.h"
#include "nextn/inference/plain_decoder.h"
#include "nextn/inference/speculative_decoder.h"
#include "nextn/kernels/panel_matmul.h"
#include "nextn/util/error.h"

namespace nextn::inference {
namespace {

using testing::max_abs_diff;
using testing::random_model;
using testing::random_prompt;

GenerationOptions greedy_options(int64_t max_new, int64_t drafts, bool reuse = false) {
  GenerationOptions options;
  options.max_new_tokens = max_new;
  options.sampling.temperature = 0;
  options.draft_tokens = drafts;
  options.reuse_last_mtp_module = reuse;
  return options;
}

// Greedy generation with N = 1 .. D + 2 drafts (beyond D with the reuse option) against plain
// greedy generation, over several prompts. Returns the acceptance counts summed over all runs.
DecodeStats check_greedy_equality(const ModelConfig& config, uint64_t seed, int prompts, bool agreeable = false) {
  DeepSeekV3 model = agreeable ? testing::agreeable_model(config, seed) : random_model(config, seed, 0.4);
  Generator generator(model);
  DecodeStats total;
  total.accepted_per_depth.assign(config.mtp_depth() + 2, 0);
  total.reached_per_depth.assign(config.mtp_depth() + 2, 0);
  DecodeStats auto_counts;  // the generator keeps auto's step times across prompts
  for (int prompt_index = 0; prompt_index < prompts; ++prompt_index) {
    auto prompt = random_prompt(1 + prompt_index * 3, config.vocab_size, seed * 100 + prompt_index);
    auto plain = generator.generate(prompt, greedy_options(24, 0));
    EXPECT_EQ(plain.tokens.size(), 24u);
    for (int64_t drafts = 1; drafts <= config.mtp_depth() + 2; ++drafts) {
      const bool reuse = drafts > config.mtp_depth();
      auto speculative = generator.generate(prompt, greedy_options(24, drafts, reuse));
      EXPECT_EQ(speculative.tokens, plain.tokens)
          << to_string(config.mtp_kind) << " N=" << drafts << " prompt " << prompt_index;
      EXPECT_EQ(speculative.stats.generated_tokens, 24);
      EXPECT_EQ(speculative.stats.step_tokens, 23);  // every token after the prefill's came from a step
      for (int64_t k = 0; k < drafts; ++k) {
        total.accepted_per_depth[k] += speculative.stats.accepted_per_depth[k];
        total.reached_per_depth[k] += speculative.stats.reached_per_depth[k];
      }
    }
    // --draft auto: steps of 0, 1 .. D drafts in whatever order the policy picks.
    GenerationOptions adaptive = greedy_options(24, config.mtp_depth());
    adaptive.adaptive_draft = true;
    auto chosen = generator.generate(prompt, adaptive);
    EXPECT_EQ(chosen.tokens, plain.tokens) << to_string(config.mtp_kind) << " auto, prompt " << prompt_index;
    auto_counts.accumulate(chosen.stats);
  }
  EXPECT_GT(auto_counts.steps_by_draft_count.at(0), 0) << "the policy tries plain steps too";
  EXPECT_GT(auto_counts.steps_by_draft_count.at(config.mtp_depth()), 0);
  return total;
}

// Both outcomes of verification must have occurred, at depth 1 and deeper, or equality proves little.
void expect_accepts_and_rejections(const DecodeStats& total) {
  EXPECT_GT(total.accepted_per_depth[0], 0);
  EXPECT_LT(total.accepted_per_depth[0], total.reached_per_depth[0]);
  EXPECT_GT(total.accepted_per_depth[1], 0);
  EXPECT_GT(total.accepted_per_depth[2], 0);
}

TEST(SpeculativeGreedy, EqualsPlainGreedySequential) {
  // Drafters that often agree with the target exercise acceptance at every depth; plain random
  // weights reject nearly always.
  expect_accepts_and_rejections(check_greedy_equality(testing::tiny_config(), 51, 6, /*agreeable=*/true));
  check_greedy_equality(testing::tiny_config(), 52, 3);
}

TEST(SpeculativeGreedy, EqualsPlainGreedyParallel) {
  expect_accepts_and_rejections(check_greedy_equality(testing::small_vocab_config(4, MtpKind::kParallel), 53, 6));
  check_greedy_equality(testing::parallel_config(2), 54, 3);
}

TEST(SpeculativeGreedy, MoreDraftsThanModulesNeedsTheReuseOption) {
  ModelConfig config = testing::tiny_config();  // D = 2
  DeepSeekV3 model = random_model(config, 55);
  EXPECT_THROW(SpeculativeDecoder(model, testing::chain_of_drafts(3, false), SamplingOptions{}, 32), Error);
  SpeculativeDecoder decoder(model, testing::chain_of_drafts(4, true), SamplingOptions{}, 32);
  EXPECT_EQ(decoder.module_for_depth(1), 1);
  EXPECT_EQ(decoder.module_for_depth(2), 2);
  EXPECT_EQ(decoder.module_for_depth(3), 2);
  EXPECT_EQ(decoder.module_for_depth(4), 2);
  ModelConfig no_mtp = config;
  no_mtp.num_nextn_predict_layers = 0;
  DeepSeekV3 main_only = random_model(no_mtp, 56);
  Generator generator(main_only);
  EXPECT_THROW(generator.generate({1, 2}, greedy_options(4, 1)), Error);
  EXPECT_EQ(generator.generate({1, 2}, greedy_options(4, 0)).tokens.size(), 4u);
}

// The drafting chain is the training forward's: depth k's logits when drafting at position n - 1
// equal mtp_logits[k - 1] at n - 1 of the full forward over the verified tokens and the drafts
// (module k fed h^{k-1}_{n-1} and Emb(t_{n-1+k}), where t_{n+j} = d_j).
void check_drafts_against_training_forward(const ModelConfig& config, int64_t drafts, bool reuse) {
  DeepSeekV3 model = random_model(config, 59, 0.4);
  SamplingOptions sampling;
  sampling.temperature = 0.8;
  sampling.seed = 5;
  SpeculativeDecoder decoder(model, testing::chain_of_drafts(drafts, reuse), sampling, 64);
  decoder.start(random_prompt(4, config.vocab_size, 60));
  int64_t checked = 0;
  for (int step = 0; step < 12; ++step) {
    std::vector<int64_t> sequence = decoder.tokens();  // t_0..t_n
    decoder.step(64);
    const SpeculativeStep& record = decoder.last_step();
    const int64_t n = record.position;
    ASSERT_EQ(n + 1, static_cast<int64_t>(sequence.size()));
    sequence.insert(sequence.end(), record.drafts.begin(), record.drafts.end());
    auto full = model->forward(torch::tensor(sequence, torch::kLong).view({1, -1}), ForwardOptions{true, false});
    for (int64_t k = 1; k <= std::min<int64_t>(drafts, config.mtp_depth()); ++k) {
      ASSERT_LT(max_abs_diff(record.draft_logits[k - 1], full.mtp_logits[k - 1][0][n - 1]), 1e-10)
          << "step " << step << " depth " << k;
      ++checked;
    }
    // The verify forward's logits are the main model's at n .. n + N.
    EXPECT_EQ(decoder.tokens()[n + record.accepted + 1], record.next_token);
  }
  EXPECT_GT(checked, 0);
}

TEST(SpeculativeDrafting, DraftLogitsEqualTheTrainingForwardsMtpLogits) {
  check_drafts_against_training_forward(testing::tiny_config(), 2, false);
  check_drafts_against_training_forward(testing::tiny_config(), 3, true);
  check_drafts_against_training_forward(testing::parallel_config(3), 3, false);
}

// After every step, each cache's entries must equal those of a fresh run over the verified tokens
// only: the main model prefilled with them, and every depth recomputed from its inputs there.
void check_caches_against_fresh_run(DeepSeekV3& model, const SpeculativeDecoder& decoder, int64_t depths) {
  const ModelConfig& config = model->config();
  const auto& tokens = decoder.tokens();
  const int64_t processed = static_cast<int64_t>(tokens.size()) - 1;  // the last token is pending
  const KvCache& main = decoder.main_cache();
  ASSERT_EQ(main.length(), processed);
  auto options = torch::TensorOptions().dtype(torch::kDouble);
  auto ids = torch::tensor(tokens, torch::kLong).view({1, -1});

  KvCache fresh_main = KvCache::for_main_model(config, 1, processed, options);
  auto h0 = run_main_model_cached(*model, ids.narrow(1, 0, processed), fresh_main).hidden;
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    ASSERT_LT(max_abs_diff(main.c_kv(layer), fresh_main.c_kv(layer)), 1e-10) << "main layer " << layer;
    ASSERT_LT(max_abs_diff(main.k_pe(layer), fresh_main.k_pe(layer)), 1e-10) << "main layer " << layer;
  }
  torch::Tensor previous = h0;
  for (int64_t k = 1; k <= depths; ++k) {
    const KvCache& cache = decoder.draft_cache(k);
    // Depth k at position j needs t_{j+k}: verified up to the pending token tokens[processed].
    const int64_t computable = config.mtp_kind == MtpKind::kSequential ? processed - k + 1 : processed;
    if (computable <= 0) break;
    ASSERT_LE(cache.length(), computable) << "depth " << k << " holds an entry built from an unverified token";
    KvCache fresh = KvCache::for_mtp_module(config, 1, computable, options);
    torch::Tensor token_ids;
    auto input = config.mtp_kind == MtpKind::kSequential ? previous : h0;
    if (config.mtp_kind == MtpKind::kSequential) token_ids = ids.narrow(1, k, computable);
    auto h = run_mtp_module_cached(*model, decoder.module_for_depth(k), input.narrow(1, 0, computable), token_ids, fresh);
    if (cache.length() > 0) {
      ASSERT_LT(max_abs_diff(cache.c_kv(0), fresh.c_kv(0).narrow(1, 0, cache.length())), 1e-10) << "depth " << k;
      ASSERT_LT(max_abs_diff(cache.k_pe(0), fresh.k_pe(0).narrow(1, 0, cache.length())), 1e-10) << "depth " << k;
    }
    previous = h;
  }
}

void check_rollback(const ModelConfig& config, int64_t drafts, bool reuse, bool agreeable) {
  DeepSeekV3 model = agreeable ? testing::agreeable_model(config, 57) : random_model(config, 57, 0.4);
  SamplingOptions greedy;
  greedy.temperature = 0;
  SpeculativeDecoder decoder(model, testing::chain_of_drafts(drafts, reuse), greedy, 64);
  decoder.start(random_prompt(5, config.vocab_size, 58));
  int64_t rejections = 0, truncated_depths = 0, accepted = 0;
  for (int step = 0; step < 20 && decoder.room() > 0; ++step) {
    const int64_t before = decoder.main_cache().length();
    decoder.step(64);
    const SpeculativeStep& record = decoder.last_step();
    accepted += record.accepted;
    if (record.accepted < static_cast<int64_t>(record.drafts.size())) ++rejections;
    for (int64_t k = 2; k <= drafts; ++k) {
      // Depth k drafted from position `before` - 1 with the drafts of depths < k; it loses that entry
      // when one of them was rejected.
      if (decoder.draft_cache(k).length() < before) ++truncated_depths;
    }
    check_caches_against_fresh_run(model, decoder, drafts);
    if (::testing::Test::HasFatalFailure()) return;
  }
  EXPECT_GT(rejections, 0);
  if (agreeable) {
    EXPECT_GT(accepted, 0);  // kept entries computed from accepted drafts are checked too
  }
  if (config.mtp_kind == MtpKind::kSequential && drafts >= 2) {
    EXPECT_GT(truncated_depths, 0);
  }
}

TEST(SpeculativeRollback, CachesEqualAFreshRunOverTheVerifiedTokens) {
  check_rollback(testing::tiny_config(), 2, false, /*agreeable=*/true);
  check_rollback(testing::tiny_config(), 4, true, /*agreeable=*/true);
  check_rollback(testing::small_vocab_config(8), 2, false, /*agreeable=*/false);
  check_rollback(testing::small_vocab_config(8, MtpKind::kParallel), 3, true, /*agreeable=*/false);
}

// A server runs a drafting request's steps inside its batch while others run
// (SpeculativeDecoder::batched_input / finish_batched_step): such steps draft nothing, and the
// drafter's caches catch up when the request drafts again. Greedy output stays plain decoding's,
// for it and for the request beside it, and every cache equals a fresh run over the tokens.
void check_batched_steps(const ModelConfig& config, uint64_t seed) {
  DeepSeekV3 model = testing::agreeable_model(config, seed);
  SamplingOptions greedy;
  greedy.temperature = 0;
  Generator generator(model);
  const auto prompt = random_prompt(5, config.vocab_size, seed + 1), other_prompt = random_prompt(3, config.vocab_size, seed + 2);
  const auto expected = generator.generate(prompt, greedy_options(30, 0)).tokens;
  const auto other_expected = generator.generate(other_prompt, greedy_options(40, 0)).tokens;

  SpeculativeDecoder decoder(model, testing::chain_of_drafts(2, false), greedy, 64);
  PlainDecoder other(model, greedy, 64);
  decoder.start(prompt);
  other.start(other_prompt);
  int64_t batched_steps = 0, drafting_steps = 0;  // steps of 0 drafts, and of 1 or more
  for (int64_t step = 0; static_cast<int64_t>(decoder.tokens().size()) < 5 + 30; ++step) {
    const int64_t left = 5 + 30 - static_cast<int64_t>(decoder.tokens().size());
    if (step % 5 < 3) {  // three steps in a batch with the other request, then two drafting alone
      BatchedStep out = run_main_model_batched(*model, {decoder.batched_input(), other.batched_input()});
      decoder.finish_batched_step(out.logits[out.first_row[0]], out.hidden[out.first_row[0]], 0.0);
      other.finish_batched_step(out.logits[out.first_row[1]], 0.0);
      ++batched_steps;
    } else {
      decoder.step(left);
      (decoder.last_step().drafts.empty() ? batched_steps : drafting_steps) += 1;  // the budget's last step drafts none
    }
    check_caches_against_fresh_run(model, decoder, 2);
    if (::testing::Test::HasFatalFailure()) return;
  }
  const std::vector<int64_t> generated(decoder.tokens().begin() + 5, decoder.tokens().end());
  EXPECT_EQ(generated, expected) << to_string(config.mtp_kind);
  const std::vector<int64_t> other_generated(other.tokens().begin() + 3, other.tokens().end());
  EXPECT_EQ(other_generated, std::vector<int64_t>(other_expected.begin(), other_expected.begin() + other_generated.size()));
  EXPECT_EQ(decoder.stats().steps_by_draft_count.at(0), batched_steps);
  EXPECT_EQ(decoder.stats().drafted_per_depth.at(0), drafting_steps);
  EXPECT_GT(drafting_steps, 2);
  EXPECT_GT(decoder.stats().accepted_per_depth.at(0), 0) << to_string(config.mtp_kind);  // the caught-up drafter drafts well
}

TEST(SpeculativeBatched, StepsInsideABatchKeepGreedyOutputAndTheCaches) {
  check_batched_steps(testing::tiny_config(), 61);
  check_batched_steps(testing::small_vocab_config(4, MtpKind::kParallel), 62);  // 4 tokens: drafts often right
}

// Tree drafts (--draft-tree): greedy output equals plain greedy decoding for every shape, the
// first child of every node is what a chain would have drafted from the same state (the tree holds
// the chain), and after every step each cache equals a fresh run over the verified tokens.
void check_tree_steps(const ModelConfig& config, const std::vector<int64_t>& shape, bool reuse, bool agreeable,
                      int64_t prompt_length, uint64_t seed, torch::ScalarType dtype = torch::kDouble) {
  DeepSeekV3 model = agreeable ? testing::agreeable_model(config, seed) : random_model(config, seed, 0.4, dtype);
  if (agreeable) model->to(dtype);
  const std::string label = to_string(config.mtp_kind) + " tree " + draft_tree_label(shape);
  const auto prompt = random_prompt(prompt_length, config.vocab_size, seed + 1);
  const int64_t new_tokens = 30;
  Generator generator(model);
  const auto expected = generator.generate(prompt, greedy_options(new_tokens, 0)).tokens;

  SamplingOptions greedy;
  greedy.temperature = 0;
  SpeculativeOptions options;
  options.reuse_last_module = reuse;
  options.tree = shape;
  const int64_t capacity = prompt_length + new_tokens;
  SpeculativeDecoder decoder(model, options, greedy, capacity);
  decoder.start(prompt);
  int64_t tree_steps = 0, accepted = 0;
  while (static_cast<int64_t>(decoder.tokens().size()) < capacity) {
    const std::vector<int64_t> before = decoder.tokens();
    decoder.step(capacity - static_cast<int64_t>(before.size()));
    const SpeculativeStep& record = decoder.last_step();
    if (record.tree) {
      ++tree_steps;
      accepted += record.accepted;
      // The chain of first children against a chain decoder's drafts from the same state.
      const DraftTree& tree = *record.tree;
      std::vector<int64_t> first_children;
      for (int64_t v = 0; !tree.node(v).children.empty(); v = tree.node(v).children[0]) {
        first_children.push_back(tree.node(tree.node(v).children[0]).token);
      }
      SpeculativeDecoder chain(model, testing::chain_of_drafts(static_cast<int64_t>(first_children.size()), reuse),
                               greedy, capacity + 8);
      chain.start(std::vector<int64_t>(before.begin(), before.end() - 1));  // its first token is the pending one
      chain.step(capacity);
      EXPECT_EQ(chain.last_step().drafts, first_children) << label << " at position " << record.position;
    }
    check_caches_against_fresh_run(model, decoder, static_cast<int64_t>(shape.size()));
    if (::testing::Test::HasFatalFailure()) return;
  }
  const std::vector<int64_t> generated(decoder.tokens().begin() + prompt_length, decoder.tokens().end());
  EXPECT_EQ(generated, expected) << label;
  EXPECT_GT(tree_steps, 3) << label;
  if (agreeable) { EXPECT_GT(accepted, 0) << label; }
}

TEST(SpeculativeTree, GreedyEqualsPlainAndTheTreeHoldsTheChain) {
  const ModelConfig sequential = testing::tiny_config();  // D = 2
  check_tree_steps(sequential, {2, 2}, false, /*agreeable=*/true, 5, 81);
  check_tree_steps(sequential, {3, 1}, false, true, 1, 82);  // a one-token prompt: depth 2 starts at position 0
  check_tree_steps(sequential, {1, 1}, false, false, 4, 83);
  check_tree_steps(sequential, {2, 2, 2}, true, true, 2, 84);  // depth 3 reuses module 2
  check_tree_steps(testing::small_vocab_config(8), {2, 3}, false, false, 3, 85);
  check_tree_steps(testing::parallel_config(3), {2, 2, 1}, false, false, 4, 86);
  check_tree_steps(testing::small_vocab_config(4, MtpKind::kParallel), {3, 2}, false, false, 1, 87);
}

// In float32 on CPU every row of a tree takes the few-rows kernels, each computed on its own (tree
// attention included): the path's rows are bit for bit plain decoding's, so greedy output is equal
// however close two logits are.
// float32 takes decoding's kernels (double models the libtorch formulas): chains and trees against
// plain decoding, on the model's rows and on decoding's panels (as generate and serve decode), in
// float32 and in bfloat16.
TEST(SpeculativeTree, Float32GreedyEqualsPlain) {
  ModelConfig config = testing::tiny_config();
  DeepSeekV3 model = random_model(config, 88, 0.4, torch::kFloat);
  Generator generator(model);
  // Prompts 0 and 3 on the rows, 1 on fp32 panels, 2 on bf16 panels (--precision bf16).
  for (int prompt_index = 0; prompt_index < 4; ++prompt_index) {
    std::optional<DecodingPanels> panels;
    if (prompt_index == 1) panels.emplace(model, DecodingPrecision::kFloat32);
    if (prompt_index == 2 && kernels::panel_matmul_vectorised()) panels.emplace(model, DecodingPrecision::kBfloat16);
    const auto prompt = random_prompt(3 + prompt_index, config.vocab_size, 89 + prompt_index);
    const auto plain = generator.generate(prompt, greedy_options(40, 0));
    for (int64_t drafts = 1; drafts <= config.mtp_depth(); ++drafts) {
      EXPECT_EQ(generator.generate(prompt, greedy_options(40, drafts)).tokens, plain.tokens)
          << "N=" << drafts << " prompt " << prompt_index;
    }
    for (const std::vector<int64_t>& shape : {std::vector<int64_t>{2, 2}, std::vector<int64_t>{4, 3}}) {
      GenerationOptions tree = greedy_options(40, static_cast<int64_t>(shape.size()));
      tree.draft_tree = shape;
      const auto speculative = generator.generate(prompt, tree);
      EXPECT_EQ(speculative.tokens, plain.tokens) << "tree " << draft_tree_label(shape) << " prompt " << prompt_index;
      EXPECT_GT(speculative.stats.drafted_per_depth.at(0), speculative.stats.steps - 4);  // the budget's end excepted
    }
  }
}

TEST(SpeculativeTree, ShapesThatCannotRunAreRefused) {
  ModelConfig config = testing::tiny_config();  // D = 2
  DeepSeekV3 model = random_model(config, 90);
  SpeculativeOptions deep;
  deep.tree = {2, 2, 2};
  EXPECT_THROW(SpeculativeDecoder(model, deep, SamplingOptions{}, 32), Error);  // 3 levels, 2 modules, no reuse
  SpeculativeOptions adaptive;
  adaptive.tree = {2};
  adaptive.adaptive = true;
  EXPECT_THROW(SpeculativeDecoder(model, adaptive, SamplingOptions{}, 32), Error);
  GenerationOptions mismatched = greedy_options(4, 1);
  mismatched.draft_tree = {2, 2};
  EXPECT_THROW(Generator(model).generate({1, 2}, mismatched), Error);
}

// Near the end of the capacity a tree shrinks to the levels whose nodes all fit in the main cache.
TEST(SpeculativeTree, ATreeShrinksToTheRoomLeft) {
  ModelConfig config = testing::tiny_config();
  DeepSeekV3 model = random_model(config, 91);
  SamplingOptions greedy;
  greedy.temperature = 0;
  SpeculativeOptions options;
  options.tree = {3, 3};  // 3 + 9 nodes
  SpeculativeDecoder decoder(model, options, greedy, 12);
  decoder.start(random_prompt(4, config.vocab_size, 92));  // 4 processed + 1 pending
  decoder.step(100);
  // 4 + 1 + 12 > 12: the first step drafts one level (3 nodes: 4 + 1 + 3 <= 12).
  ASSERT_TRUE(decoder.last_step().tree.has_value());
  EXPECT_EQ(decoder.last_step().tree->levels(), 1);
  while (decoder.room() > 0) decoder.step(100);
  EXPECT_EQ(static_cast<int64_t>(decoder.tokens().size()), 12);
}

}  // namespace
}  // namespace nextn::inference
