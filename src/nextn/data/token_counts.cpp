#include "nextn/data/token_counts.h"

#include <algorithm>

#include "nextn/util/error.h"

namespace nextn::data {

std::vector<int64_t> count_tokens(const TokenDataset& dataset, Split split, int64_t vocab_size, int64_t max_tokens) {
  NEXTN_CHECK(vocab_size >= dataset.vocab_size(), "counting tokens: vocab_size ", vocab_size,
              " is smaller than the dataset's ", dataset.vocab_size());
  NEXTN_CHECK(max_tokens >= 0, "counting tokens: max_tokens must be >= 0 (0: all), got ", max_tokens);
  std::vector<int64_t> counts(static_cast<size_t>(vocab_size), 0);
  int64_t left = max_tokens > 0 ? max_tokens : dataset.num_tokens(split);
  for (const TokenShard& shard : dataset.shards(split)) {
    const int64_t n = std::min(left, shard.size());
    for (int64_t i = 0; i < n; ++i) {
      const int32_t id = shard.token(i);
      // The shard reader checked every token against the dataset's vocabulary when it opened.
      NEXTN_CHECK(id >= 0 && id < vocab_size, "counting tokens: token ", id, " at ", i, " of '", shard.path(),
                  "' is outside [0, ", vocab_size, ")");
      ++counts[id];
    }
    left -= n;
    if (left == 0) break;
  }
  return counts;
}

}  // namespace nextn::data
