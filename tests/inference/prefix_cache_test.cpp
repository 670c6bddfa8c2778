// The prefix cache (inference/prefix_cache.h): a prompt whose first chunks an earlier prompt left
// gets exactly the KV entries, hidden states and logits it would have computed; full chunks are
// reused by longer prompts, a prompt's last chunk (with its logits) by the same prompt again; least
// recently used chunks leave first, a prefix's last ones before its first; nothing is kept past
// the byte budget; one cache serves one chunk size.
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
  PrefixCache cache(64 << 20, 8);
  const Prefilled uncached_first = prefill(model, first, 8, nullptr);
  const Prefilled cached_first = prefill(model, first, 8, &cache);
  EXPECT_EQ(cached_first.reused, 0);
  EXPECT_EQ(cache.chunks(), 4);  // [0, 8), [8, 16), [16, 24), and the last, [24, 30), with its logits
  expect_same_bits(cached_first, uncached_first);

  // The same 20 first tokens: chunks [0, 8) and [8, 16) are reused, [16, 24) differs.
  std::vector<int64_t> second = first;
  for (size_t i = 20; i < second.size(); ++i) second[i] = (second[i] + 1) % vocab;
  const Prefilled reused = prefill(model, second, 8, &cache);
  EXPECT_EQ(reused.reused, 16);
  expect_same_bits(reused, prefill(model, second, 8, nullptr));
  EXPECT_EQ(cache.hits(), 2);

  // The same prompt again: all of it, the last chunk's logits too (no forward at all).
  const Prefilled again = prefill(model, first, 8, &cache);
  EXPECT_EQ(again.reused, 30);
  expect_same_bits(again, uncached_first);
  // A prompt of exactly 3 chunks: its last, [16, 24), was kept as a longer prompt's chunk, without
  // logits: computed, and its logits then kept with it; the next time, all of it.
  const std::vector<int64_t> exact(first.begin(), first.begin() + 24);
  const Prefilled uncached_exact = prefill(model, exact, 8, nullptr);
  const int64_t bytes_before = cache.bytes(), chunks_before = cache.chunks();
  EXPECT_EQ(PromptPrefill(exact, 8, &cache).next_computed_tokens(), 8);  // [0, 16) copied, [16, 24) computed
  const Prefilled exact_run = prefill(model, exact, 8, &cache);
  EXPECT_EQ(exact_run.reused, 16);
  expect_same_bits(exact_run, uncached_exact);
  EXPECT_EQ(cache.chunks(), chunks_before);
  EXPECT_EQ(cache.bytes() - bytes_before, vocab * static_cast<int64_t>(sizeof(float)));  // its logits joined it
  EXPECT_EQ(PromptPrefill(exact, 8, &cache).next_computed_tokens(), 0);  // all of it held
  const Prefilled exact_again = prefill(model, exact, 8, &cache);
  EXPECT_EQ(exact_again.reused, 24);
  expect_same_bits(exact_again, uncached_exact);
  // A one-token prompt: its only chunk is its last.
  const std::vector<int64_t> one = {first[0]};
  prefill(model, one, 8, &cache);
  const Prefilled one_again = prefill(model, one, 8, &cache);
  EXPECT_EQ(one_again.reused, 1);
  expect_same_bits(one_again, prefill(model, one, 8, nullptr));
  // Another chunk size has other bounds (a last chunk [24, 30) would match while the chunks before
  // it were computed at other bounds): refused.
  EXPECT_THROW(prefill(model, first, 6, &cache), Error);
}

// The logits handed out are the caller's: writing to them (as a sampler with a logit bias may)
// leaves the kept ones as they were.
TEST(PrefixCache, RestoredLogitsAreACopy) {
  DeepSeekV3 model = testing::random_model(testing::tiny_config(), 75, 0.3, torch::kFloat);
  const auto prompt = testing::random_prompt(11, model->config().vocab_size, 8);
  PrefixCache cache(1 << 20, 4);
  const Prefilled computed = prefill(model, prompt, 4, &cache);
  Prefilled copied = prefill(model, prompt, 4, &cache);
  ASSERT_EQ(copied.reused, 11);
  copied.logits.fill_(0.0f);
  expect_same_bits(prefill(model, prompt, 4, &cache), computed);
}

TEST(PrefixCache, TheLeastRecentlyUsedChunksLeaveFirstWithinTheBudget) {
  DeepSeekV3 model = testing::random_model(testing::tiny_config(), 72, 0.3, torch::kFloat);
  const int64_t vocab = model->config().vocab_size;
  // Prompts of one chunk each (full, and their last: kept with logits), all of the same size.
  const auto a = testing::random_prompt(8, vocab, 2), b = testing::random_prompt(8, vocab, 3),
             c = testing::random_prompt(8, vocab, 4);
  PrefixCache probe(1 << 20, 8);
  prefill(model, a, 8, &probe);
  ASSERT_EQ(probe.chunks(), 1);
  const int64_t chunk_bytes = probe.bytes();
  EXPECT_GT(chunk_bytes, 0);

  PrefixCache cache(2 * chunk_bytes, 8);
  prefill(model, a, 8, &cache);
  prefill(model, b, 8, &cache);
  EXPECT_EQ(prefill(model, a, 8, &cache).reused, 8);  // a is now the most recently used
  prefill(model, c, 8, &cache);                       // b leaves
  EXPECT_EQ(cache.chunks(), 2);
  EXPECT_LE(cache.bytes(), cache.max_bytes());
  EXPECT_EQ(prefill(model, b, 8, &cache).reused, 0);  // computed, and kept again: a leaves
  EXPECT_EQ(prefill(model, c, 8, &cache).reused, 8);
  EXPECT_EQ(prefill(model, a, 8, &cache).reused, 0);

  PrefixCache none(0, 8);
  prefill(model, a, 8, &none);
  EXPECT_EQ(none.chunks(), 0);
  EXPECT_EQ(prefill(model, a, 8, &none).reused, 0);
  EXPECT_THROW(PrefixCache(-1, 8), Error);
  EXPECT_THROW(PrefixCache(1 << 20, 0), Error);
}

// Under pressure a prefix loses its last chunks first: its first is what every prompt sharing it
// needs (an LRU in touch order would drop the first chunk, making the rest useless).
TEST(PrefixCache, APrefixLosesItsLastChunksFirst) {
  DeepSeekV3 model = testing::random_model(testing::tiny_config(), 74, 0.3, torch::kFloat);
  const int64_t vocab = model->config().vocab_size;
  const auto a = testing::random_prompt(19, vocab, 6), c = testing::random_prompt(8, vocab, 7);
  PrefixCache probe(1 << 20, 8);
  prefill(model, a, 8, &probe);
  ASSERT_EQ(probe.chunks(), 3);  // a[0, 8), a[8, 16), and its last, a[16, 19)
  PrefixCache cache(probe.bytes(), 8);
  prefill(model, a, 8, &cache);
  ASSERT_EQ(cache.chunks(), 3);
  prefill(model, c, 8, &cache);  // room for c: a's last chunks go, from its end
  EXPECT_EQ(prefill(model, c, 8, &cache).reused, 8);
  EXPECT_EQ(prefill(model, a, 8, &cache).reused, 8) << "a's first chunk stayed, its later ones went";
}

TEST(PrefixCache, RefusesACacheThatDoesNotHoldThePositionsBefore) {
  DeepSeekV3 model = testing::random_model(testing::tiny_config(), 73, 0.3, torch::kFloat);
  const auto prompt = testing::random_prompt(12, model->config().vocab_size, 5);
  PrefixCache cache(1 << 20, 4);
  Prefilled run = prefill(model, prompt, 4, &cache);
  EXPECT_THROW(cache.restore(prompt, 4, 8, run.cache), Error);   // it holds 12 entries, not 4
  EXPECT_THROW(cache.restore(prompt, 8, 16, run.cache), Error);  // past the prompt
  Prefilled fresh = prefill(model, {prompt[0], prompt[1]}, 4, nullptr);
  EXPECT_THROW(cache.restore(prompt, 2, 6, fresh.cache), Error);  // not a chunk's bounds
  EXPECT_THROW(cache.keep(prompt, 0, 2, fresh.cache, fresh.hidden), Error);  // not a chunk: the prompt goes on
  EXPECT_NE(prefix_key(prompt, 4), prefix_key(prompt, 8));
}

}  // namespace
}  // namespace nextn::inference
