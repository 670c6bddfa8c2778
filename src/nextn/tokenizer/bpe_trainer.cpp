#include "nextn/tokenizer/bpe_trainer.h"

#include <algorithm>
#include <queue>

#include "nextn/tokenizer/byte_level.h"
#include "nextn/util/error.h"

namespace nextn::tokenizer {

void PieceCounts::add_text(const PreTokenizer& pre_tokenizer, std::string_view text) {
  std::vector<std::string_view> pieces;
  pre_tokenizer.split(text, pieces);
  for (std::string_view piece : pieces) add_piece(piece);
}

void PieceCounts::add_piece(std::string_view piece, int64_t count) {
  counts_[std::string(piece)] += count;
  total_ += count;
}

void PieceCounts::merge_from(PieceCounts&& other) {
  if (counts_.empty()) {
    counts_ = std::move(other.counts_);
  } else {
    for (auto& [piece, count] : other.counts_) counts_[piece] += count;
  }
  total_ += other.total_;
  other.counts_.clear();
  other.total_ = 0;
}

namespace {

uint64_t pair_key(int32_t left, int32_t right) { return (uint64_t(uint32_t(left)) << 32) | uint32_t(right); }
int32_t left_of(uint64_t key) { return int32_t(key >> 32); }
int32_t right_of(uint64_t key) { return int32_t(key & 0xFFFFFFFFu); }

struct Word {
  std::vector<int32_t> symbols;
  int64_t count = 0;
};

struct PairStats {
  int64_t count = 0;
  std::vector<uint32_t> words;  // words that contain (or once contained) the pair; may repeat
};

struct HeapEntry {
  int64_t count;
  uint64_t key;
  // Priority: higher count first, then the smaller pair.
  bool operator<(const HeapEntry& other) const {
    return count != other.count ? count < other.count : key > other.key;
  }
};

class Trainer {
 public:
  Trainer(const PieceCounts& pieces, const BpeTrainerOptions& options) : options_(options) {
    num_special_ = int32_t(options.special_tokens.size());
    NEXTN_CHECK(options.vocab_size >= num_special_ + 256, "vocabulary size ", options.vocab_size,
                " is too small: it must hold the ", num_special_, " special tokens and the 256 byte tokens");
    NEXTN_CHECK(options.min_frequency >= 1, "min frequency must be at least 1");
    for (int byte = 0; byte < 256; ++byte) add_token(std::string(1, char(byte)));
    collect_words(pieces);
    count_initial_pairs();
  }

  TokenizerSpec run(const TrainProgress& progress) {
    const int32_t wanted = options_.vocab_size - num_special_ - 256;
    int32_t learned = 0;
    while (int32_t(token_bytes_.size()) + num_special_ < options_.vocab_size) {
      uint64_t key = 0;
      if (!pop_best_pair(key)) break;
      merge_pair(key);
      ++learned;
      if (progress && (learned % 256 == 0 || learned == wanted)) progress(learned, wanted);
    }
    return make_spec();
  }

 private:
  // Token ids count the special tokens first; token_bytes_ holds the others from id S on.
  int32_t add_token(const std::string& bytes) {
    auto it = id_of_bytes_.find(bytes);
    if (it != id_of_bytes_.end()) return it->second;
    int32_t id = num_special_ + int32_t(token_bytes_.size());
    token_bytes_.push_back(bytes);
    id_of_bytes_.emplace(bytes, id);
    return id;
  }
  const std::string& bytes_of(int32_t id) const { return token_bytes_[id - num_special_]; }

  void collect_words(const PieceCounts& pieces) {
    // Sorted, so that the word order (and everything downstream) never depends on hash order.
    std::vector<std::pair<std::string_view, int64_t>> sorted;
    sorted.reserve(pieces.counts().size());
    for (const auto& [piece, count] : pieces.counts()) {
      if (piece.size() >= 2) sorted.emplace_back(piece, count);  // one byte has no pair to merge
    }
    std::sort(sorted.begin(), sorted.end());
    words_.reserve(sorted.size());
    for (const auto& [piece, count] : sorted) {
      Word word;
      word.count = count;
      for (char c : piece) word.symbols.push_back(num_special_ + uint8_t(c));
      words_.push_back(std::move(word));
    }
  }

  void count_initial_pairs() {
    for (uint32_t w = 0; w < words_.size(); ++w) {
      const Word& word = words_[w];
      for (std::size_t i = 0; i + 1 < word.symbols.size(); ++i) {
        PairStats& stats = pairs_[pair_key(word.symbols[i], word.symbols[i + 1])];
        stats.count += word.count;
        if (stats.words.empty() || stats.words.back() != w) stats.words.push_back(w);
      }
    }
    for (const auto& [key, stats] : pairs_) heap_.push({stats.count, key});
  }

  // The most frequent pair, skipping heap entries whose count went stale (re-queued with the
  // current count, so the heap always holds every pair at least at its true count).
  bool pop_best_pair(uint64_t& key) {
    while (!heap_.empty()) {
      HeapEntry top = heap_.top();
      heap_.pop();
      auto it = pairs_.find(top.key);
      int64_t current = it == pairs_.end() ? 0 : it->second.count;
      if (current != top.count) {
        if (current > 0) heap_.push({current, top.key});
        continue;
      }
      if (current < options_.min_frequency) return false;
      key = top.key;
      return true;
    }
    return false;
  }

  void merge_pair(uint64_t key) {
    const int32_t left = left_of(key), right = right_of(key);
    const int32_t merged = add_token(bytes_of(left) + bytes_of(right));
    merges_.emplace_back(left, right);

    std::vector<uint32_t> candidates = std::move(pairs_[key].words);
    pairs_.erase(key);
    std::sort(candidates.begin(), candidates.end());
    candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());

    std::vector<uint64_t> grown;  // pairs whose count rose: they need a fresh heap entry
    std::vector<std::pair<uint64_t, int32_t>> deltas;
    for (uint32_t w : candidates) {
      Word& word = words_[w];
      if (!rewrite_word(word, left, right, merged, deltas)) continue;
      for (const auto& [pair, delta] : deltas) {
        if (pair == key) continue;  // fully merged away; its entry is gone
        PairStats& stats = pairs_[pair];
        stats.count += int64_t(delta) * word.count;
        if (delta > 0) {
          stats.words.push_back(w);
          grown.push_back(pair);
        }
      }
    }
    std::sort(grown.begin(), grown.end());
    grown.erase(std::unique(grown.begin(), grown.end()), grown.end());
    for (uint64_t pair : grown) heap_.push({pairs_[pair].count, pair});
  }

  // Replaces every (left, right) in the word, left to right, by `merged`, and lists how the
  // word's pair counts changed (old pairs -1, new pairs +1, summed per pair). False when the
  // word no longer contains the pair (its index entry was stale).
  static bool rewrite_word(Word& word, int32_t left, int32_t right, int32_t merged,
                           std::vector<std::pair<uint64_t, int32_t>>& deltas) {
    const std::vector<int32_t>& old_symbols = word.symbols;
    std::vector<int32_t> new_symbols;
    new_symbols.reserve(old_symbols.size());
    bool changed = false;
    for (std::size_t i = 0; i < old_symbols.size(); ++i) {
      if (i + 1 < old_symbols.size() && old_symbols[i] == left && old_symbols[i + 1] == right) {
        new_symbols.push_back(merged);
        ++i;
        changed = true;
      } else {
        new_symbols.push_back(old_symbols[i]);
      }
    }
    if (!changed) return false;
    deltas.clear();
    for (std::size_t i = 0; i + 1 < old_symbols.size(); ++i) {
      deltas.emplace_back(pair_key(old_symbols[i], old_symbols[i + 1]), -1);
    }
    for (std::size_t i = 0; i + 1 < new_symbols.size(); ++i) {
      deltas.emplace_back(pair_key(new_symbols[i], new_symbols[i + 1]), +1);
    }
    std::sort(deltas.begin(), deltas.end());
    std::size_t out = 0;
    for (std::size_t i = 0; i < deltas.size();) {
      uint64_t pair = deltas[i].first;
      int32_t sum = 0;
      for (; i < deltas.size() && deltas[i].first == pair; ++i) sum += deltas[i].second;
      if (sum != 0) deltas[out++] = {pair, sum};
    }
    deltas.resize(out);
    word.symbols = std::move(new_symbols);
    return true;
  }

  TokenizerSpec make_spec() const {
    TokenizerSpec spec;
    spec.pre_tokenizer = options_.pre_tokenizer;
    for (int32_t i = 0; i < num_special_; ++i) {
      spec.added_tokens.push_back({i, options_.special_tokens[i], /*special=*/true, /*normalized=*/false});
      // Listed in the model vocabulary too, as DeepSeek-V3's file does: Hugging Face gives an
      // added token the id the vocabulary has for it, else the next id after the vocabulary, so
      // without this entry it would number the special tokens differently.
      spec.vocab.emplace_back(options_.special_tokens[i], i);
    }
    for (std::size_t i = 0; i < token_bytes_.size(); ++i) {
      spec.vocab.emplace_back(bytes_to_byte_level(token_bytes_[i]), num_special_ + int32_t(i));
    }
    for (const auto& [left, right] : merges_) {
      spec.merges.emplace_back(bytes_to_byte_level(bytes_of(left)), bytes_to_byte_level(bytes_of(right)));
    }
    return spec;
  }

  const BpeTrainerOptions& options_;
  int32_t num_special_ = 0;
  std::vector<std::string> token_bytes_;
  std::unordered_map<std::string, int32_t> id_of_bytes_;
  std::vector<Word> words_;
  std::unordered_map<uint64_t, PairStats> pairs_;
  std::priority_queue<HeapEntry> heap_;
  std::vector<std::pair<int32_t, int32_t>> merges_;
};

}  // namespace

TokenizerSpec train_bpe(const PieceCounts& pieces, const BpeTrainerOptions& options, const TrainProgress& progress) {
  Trainer trainer(pieces, options);
  return trainer.run(progress);
}

}  // namespace nextn::tokenizer
