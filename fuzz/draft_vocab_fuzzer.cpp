// draft_vocab.json: a ranking of a model's token ids (a permutation with counts) and the hash of
// the tokenizer it ranks.
#include "fuzz_support.h"
#include "nextn/inference/token_ranking.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = nextn::fuzz::write_scratch_file("draft_vocab.json", data, size);
  nextn::fuzz::expect_clean_refusal([&] {
    const auto ranking = nextn::inference::load_token_ranking(path);
    // A valid ranking is a permutation of [0, V).
    std::vector<bool> seen(ranking.vocab_size(), false);
    for (int64_t i = 0; i < ranking.vocab_size(); ++i) {
      const int64_t id = ranking.ranked_ids[i];
      if (id < 0 || id >= ranking.vocab_size() || seen[id]) std::abort();
      seen[id] = true;
    }
    nextn::inference::load_token_ranking_for(path, ranking.vocab_size(), ranking.tokenizer_hash);
  });
  return 0;
}
