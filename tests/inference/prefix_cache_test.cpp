// The prefix cache (inference/prefix_cache.h): a prompt whose first chunks an earlier prompt left
// gets exactly the KV entries, hidden states and logits it would have computed; only full chunks
// before the prompt's last are reused; least recently used chunks leave first; nothing is kept
// past the byte budget.
#include <gtest/gtest.h>

#include "inference_test_support.h"
#include "nextn/inference/prefix_cache.h"
#include "nextn/inference/prompt_prefill.h"
#include "nextn/util/error.h"

namespace nextn::inference {
namespace {

struct Prefilled {
  KvCache cache;
  torch::Tensor hidden, logits;
  int64_t reused = 0;
};

Prefilled prefill(DeepSeekV3& model, const std::vector<int64_t>& prompt, int64_t chunk, PrefixCache* prefix_cache) {
  Prefilled out;
  out.cache = KvCache::for_main_model(model->config(), 1, static_cast<int64_t>(prompt.size()),
                                      torch::TensorOptions().dtype(model->embed_tokens->weight.scalar_type()));
  PromptPrefill run(prompt, chunk, prefix_cache);
  std::vector<torch::Tensor> hidden;
  while (!run.done()) {
    const int64_t from = run.next_position();
    MainModelStep step = run.run_next_chunk(*model, out.cache);
    EXPECT_EQ(from + step.hidden.size(1), run.next_position()) << "the hidden states span the call's positions";
    hidden.push_back(step.hidden);
    out.logits = step.logits;
  }
  out.hidden = torch::cat(hidden, 1);
  out.reused = run.reused_tokens();
  return out;
}

// Bit for bit: the cache's entries of every layer, h^0 and the last logits.
void expect_same_bits(const Prefilled& a, const Prefilled& b) {
  ASSERT_EQ(a.cache.length(), b.cache.length());
  for (int64_t layer = 0; layer < a.cache.num_layers(); ++layer) {
    EXPECT_TRUE(torch::equal(a.cache.c_kv(layer), b.cache.c_kv(layer))) << "layer " << layer;
    EXPECT_TRUE(torch::equal(a.cache.k_pe(layer), b.cache.k_pe(layer))) << "layer " << layer;
  }
  EXPECT_TRUE(torch::equal(a.hidden, b.hidden));
  EXPECT_TRUE(torch::equal(a.logits, b.logits));
}

TEST(PrefixCache, APromptStartingWithAnEarlierOnesChunksGetsTheBitsItWouldCompute) {
  DeepSeekV3 model = testing::random_model(testing::tiny_config(), 71, 0.3, torch::kFloat);
  const int64_t vocab = model->config().vocab_size;
  std::vector<int64_t> first = testing::random_prompt(30, vocab, 1);
  PrefixCache cache(64 << 20);
  const Prefilled uncached_first = prefill(model, first, 8, nullptr);
  const Prefilled cached_first = prefill(model, first, 8, &cache);
  EXPECT_EQ(cached_first.reused, 0);
  EXPECT_EQ(cache.chunks(), 3);  // [0, 8), [8, 16), [16, 24); [24, 30) is not full
  expect_same_bits(cached_first, uncached_first);

  // The same 20 first tokens: chunks [0, 8) and [8, 16) are reused, [16, 24) differs.
  std::vector<int64_t> second = first;
  for (size_t i = 20; i < second.size(); ++i) second[i] = (second[i] + 1) % vocab;
  const Prefilled reused = prefill(model, second, 8, &cache);
  EXPECT_EQ(reused.reused, 16);
  expect_same_bits(reused, prefill(model, second, 8, nullptr));
  EXPECT_EQ(cache.hits(), 2);

  // The same prompt again: all but its last chunk ([24, 30), computed for its logits).
  EXPECT_EQ(prefill(model, first, 8, &cache).reused, 24);
  // A prompt of exactly 3 chunks: the last full chunk is computed, not copied, and then kept.
  const std::vector<int64_t> exact(first.begin(), first.begin() + 24);
  const Prefilled exact_run = prefill(model, exact, 8, &cache);
  EXPECT_EQ(exact_run.reused, 16);
  expect_same_bits(exact_run, prefill(model, exact, 8, nullptr));
  // Another chunk size has other bounds: nothing matches.
  EXPECT_EQ(prefill(model, first, 6, &cache).reused, 0);
}

TEST(PrefixCache, TheLeastRecentlyUsedChunksLeaveFirstWithinTheBudget) {
  DeepSeekV3 model = testing::random_model(testing::tiny_config(), 72, 0.3, torch::kFloat);
  const int64_t vocab = model->config().vocab_size;
  const auto a = testing::random_prompt(9, vocab, 2), b = testing::random_prompt(9, vocab, 3),
             c = testing::random_prompt(9, vocab, 4);
  // One chunk's bytes, measured.
  PrefixCache probe(1 << 20);
  prefill(model, a, 8, &probe);
  ASSERT_EQ(probe.chunks(), 1);
  const int64_t chunk_bytes = probe.bytes();
  EXPECT_GT(chunk_bytes, 0);

  PrefixCache cache(2 * chunk_bytes);
  prefill(model, a, 8, &cache);
  prefill(model, b, 8, &cache);
  EXPECT_EQ(prefill(model, a, 8, &cache).reused, 8);  // a is now the most recently used
  prefill(model, c, 8, &cache);                       // b leaves
  EXPECT_EQ(cache.chunks(), 2);
  EXPECT_LE(cache.bytes(), cache.max_bytes());
  EXPECT_EQ(prefill(model, b, 8, &cache).reused, 0);
  EXPECT_EQ(prefill(model, c, 8, &cache).reused, 8);

  PrefixCache none(0);
  prefill(model, a, 8, &none);
  EXPECT_EQ(none.chunks(), 0);
  EXPECT_EQ(prefill(model, a, 8, &none).reused, 0);
  EXPECT_THROW(PrefixCache(-1), Error);
}

// Under pressure a prefix loses its last chunks first: its first is what every prompt sharing it
// needs (an LRU in touch order would drop the first chunk, making the rest useless).
TEST(PrefixCache, APrefixLosesItsLastChunksFirst) {
  DeepSeekV3 model = testing::random_model(testing::tiny_config(), 74, 0.3, torch::kFloat);
  const int64_t vocab = model->config().vocab_size;
  const auto a = testing::random_prompt(19, vocab, 6), c = testing::random_prompt(9, vocab, 7);
  PrefixCache probe(1 << 20);
  prefill(model, c, 8, &probe);
  PrefixCache cache(2 * probe.bytes() + probe.bytes() / 2);  // two chunks of 8 (a's are as large)
  prefill(model, a, 8, &cache);  // keeps a[0, 8) and a[8, 16)
  ASSERT_EQ(cache.chunks(), 2);
  prefill(model, c, 8, &cache);  // one must go: a[8, 16)
  EXPECT_EQ(cache.chunks(), 2);
  EXPECT_EQ(prefill(model, a, 8, &cache).reused, 8) << "a's first chunk stayed";
}

TEST(PrefixCache, RefusesACacheThatDoesNotHoldThePositionsBefore) {
  DeepSeekV3 model = testing::random_model(testing::tiny_config(), 73, 0.3, torch::kFloat);
  const auto prompt = testing::random_prompt(12, model->config().vocab_size, 5);
  PrefixCache cache(1 << 20);
  Prefilled run = prefill(model, prompt, 4, &cache);
  EXPECT_THROW(cache.restore(prompt, 4, 8, run.cache), Error);   // it holds 12 entries, not 4
  EXPECT_THROW(cache.restore(prompt, 8, 16, run.cache), Error);  // past the prompt
  EXPECT_NE(prefix_key(prompt, 4), prefix_key(prompt, 8));
}

}  // namespace
}  // namespace nextn::inference
