// Token ids ranked by their frequency in a corpus: a drafter drafts from the most frequent ones
// (draft_head.h; FR-Spec, Zhao et al. 2025, arXiv 2502.14856, ranks by corpus frequency because
// the tokens a model writes most are the ones it drafts right most). Kept beside a model as
// draft_vocab.json, written by `nextn draft-vocab` and read by `nextn generate --draft-vocab K`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nextn::inference {

constexpr const char* kTokenRankingFile = "draft_vocab.json";

struct TokenRanking {
  std::vector<int64_t> ranked_ids;  // every id of [0, vocab size), most frequent first; ties: lower id first
  std::vector<int64_t> counts;      // counts[i]: occurrences of ranked_ids[i] (non-increasing)
  std::string source;               // what was counted, for people
  std::string tokenizer_hash;       // the tokenizer whose ids these are (Tokenizer::hash())

  int64_t vocab_size() const { return static_cast<int64_t>(ranked_ids.size()); }
  int64_t tokens_counted() const;
  std::vector<int64_t> most_frequent(int64_t k) const;  // the first k ranked ids; 1 <= k <= vocab size
};

// Ranks the ids 0..counts.size()-1 by count_per_id (every id, the unseen ones last).
TokenRanking rank_tokens(const std::vector<int64_t>& count_per_id, std::string source, std::string tokenizer_hash);

// JSON: {"format": "nextn-token-ranking", "version": 2, "vocab_size": V, "tokens_counted": N,
// "source": "...", "tokenizer_hash": "sha256:<64 hex>", "ranked_token_ids": [V ids],
// "counts": [V counts]}, written atomically. (Version 1 had no tokenizer hash: a ranking made
// with another tokenizer of the same size went unnoticed; it is refused with a request to rank again.)
void save_token_ranking(const std::string& path, const TokenRanking& ranking);
// Validates every field (a permutation of [0, V), counts non-negative, non-increasing and summing
// to tokens_counted, ties in id order); a nextn::Error names the file, the field and the fault.
TokenRanking load_token_ranking(const std::string& path);

// load_token_ranking, then checks that the ranking is of this model's tokens: its size and the
// tokenizer it was made with. A ranking of other ids would not change the output (drafts stay
// exact), only make drafting slower without a word: hence an error that says to rank again.
TokenRanking load_token_ranking_for(const std::string& path, int64_t vocab_size, const std::string& tokenizer_hash);

}  // namespace nextn::inference
