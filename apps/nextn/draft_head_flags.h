// The drafter options shared by `nextn generate` and `nextn bench decode`: --draft-vocab K takes
// the K most frequent tokens of the model directory's draft_vocab.json (`nextn draft-vocab` writes
// it), or, when the directory has none, the first K token ids (BPE merge order, a rougher proxy for
// frequency) and says so.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "nextn/inference/token_ranking.h"
#include "nextn/util/error.h"

namespace nextn::cli {

// The token ids a drafter may draft and, for people, where they come from.
struct DraftVocabulary {
  std::vector<int64_t> token_ids;  // empty: every token
  std::string description;         // "the K most frequent tokens of <file> (<what was counted>)" or "token ids [0, K) ..."
};

// tokenizer_hash: the model's tokenizer (Tokenizer::hash()); a ranking made with another is refused.
inline DraftVocabulary draft_vocabulary_for(const std::string& model_dir, int64_t k, int64_t vocab_size,
                                            const std::string& tokenizer_hash) {
  if (k == 0) return {};
  NEXTN_CHECK(k >= 1 && k <= vocab_size, "--draft-vocab ", k, " must be in [1, vocab_size=", vocab_size,
              "] (0: every token)");
  const std::string path =
      model_dir.empty() ? std::string() : (std::filesystem::path(model_dir) / inference::kTokenRankingFile).string();
  if (!path.empty() && std::filesystem::exists(path)) {
    const inference::TokenRanking ranking = inference::load_token_ranking_for(path, vocab_size, tokenizer_hash);
    return {ranking.most_frequent(k), cat("the ", k, " most frequent tokens of ", path, " (", ranking.source, ")")};
  }
  DraftVocabulary vocabulary;
  vocabulary.description = cat("token ids [0, ", k, ") (no ", inference::kTokenRankingFile,
                               model_dir.empty() ? "" : " in '" + model_dir + "'",
                               "; `nextn draft-vocab` ranks tokens by their frequency in a dataset)");
  vocabulary.token_ids.resize(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) vocabulary.token_ids[i] = i;
  return vocabulary;
}

// --draft as `generate` and `serve` take it: "auto" (each step drafts the count in 0..D that the
// draft policy expects to pay most, D = the MTP depth) or a positive count N.
struct DraftCount {
  int64_t drafts = 0;  // N, or D with adaptive
  bool adaptive = false;
};

inline DraftCount parse_draft_option(const std::string& text, int64_t mtp_depth) {
  if (text == "auto") return {mtp_depth, true};
  std::size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  NEXTN_CHECK(used == text.size() && !text.empty(), "--draft '", text, "': expected a number of drafts or 'auto'");
  NEXTN_CHECK(value >= 1, "--draft ", value, ": drafts per step must be at least 1 (for plain decoding, leave out --speculative)");
  return {value, false};
}

}  // namespace nextn::cli
