// Learning BPE merges from a corpus. The corpus is first reduced to counts of distinct
// pre-token pieces (BPE never merges across pieces), then merges are learned by the classic
// algorithm: repeatedly merge the most frequent adjacent pair. Pair counts are kept up to date
// incrementally: a merge touches only the pieces that contain the pair (found through a
// pair -> pieces index), and a lazy max-heap finds the next best pair, so the cost per merge is
// proportional to what it changes, not to the corpus.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "nextn/tokenizer/pretokenizer.h"
#include "nextn/tokenizer/special_tokens.h"
#include "nextn/tokenizer/tokenizer.h"

namespace nextn::tokenizer {

// Distinct pre-token pieces (raw bytes) and how often each occurs.
class PieceCounts {
 public:
  void add_text(const PreTokenizer& pre_tokenizer, std::string_view text);
  void add_piece(std::string_view piece, int64_t count = 1);
  // Adds another counter's pieces (for counting in parallel, one counter per thread).
  void merge_from(PieceCounts&& other);

  const std::unordered_map<std::string, int64_t>& counts() const { return counts_; }
  int64_t total_pieces() const { return total_; }

 private:
  std::unordered_map<std::string, int64_t> counts_;
  int64_t total_ = 0;
};

struct BpeTrainerOptions {
  int32_t vocab_size = 8192;  // special tokens + 256 byte tokens + merges
  int64_t min_frequency = 2;  // pairs seen fewer times are never merged
  std::vector<std::string> special_tokens = default_special_tokens();
  PreTokenizerSpec pre_tokenizer = deepseek_v3_pre_tokenizer();
};

// Called every few merges with (merges learned, merges wanted).
using TrainProgress = std::function<void(int32_t, int32_t)>;

// Ids: special tokens 0..S-1 in the given order, bytes S..S+255 in byte order, then one id per
// new token in the order merges created them. The result may be smaller than vocab_size when the
// corpus runs out of pairs seen min_frequency times. Ties between equally frequent pairs go to
// the pair with the smaller (left id, right id), which makes training deterministic.
TokenizerSpec train_bpe(const PieceCounts& pieces, const BpeTrainerOptions& options,
                        const TrainProgress& progress = {});

}  // namespace nextn::tokenizer
