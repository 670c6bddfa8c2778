// How often each token id occurs in a split of a prepared dataset: the frequencies a drafter's
// vocabulary is ranked by (inference/token_ranking.h).
#pragma once

#include <cstdint>
#include <vector>

#include "nextn/data/split.h"
#include "nextn/data/token_dataset.h"

namespace nextn::data {

// counts[id] for id in [0, vocab_size), over the split's first `max_tokens` tokens in shard
// order (0: all). vocab_size must be at least the dataset's (a token outside it is an error).
std::vector<int64_t> count_tokens(const TokenDataset& dataset, Split split, int64_t vocab_size, int64_t max_tokens = 0);

}  // namespace nextn::data
