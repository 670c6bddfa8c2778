#include "nextn/tokenizer/bpe_model.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <queue>

#include "nextn/tokenizer/utf8.h"

#include "nextn/util/error.h"

namespace nextn::tokenizer {
namespace {

// Pieces up to this many bytes merge by scanning (cheap for the short pieces that make up nearly
// all text); longer ones use a heap so that a megabyte-long run is O(n log n), not O(n^2).
constexpr std::size_t kScanLimit = 48;

// Encoded pieces are cached per thread: code repeats the same pieces ("self", " =", "\n    ")
// over and over, and a lookup is far cheaper than merging. The cache is cleared when full, which
// bounds its memory; long pieces are rarely repeated and are not cached.
constexpr std::size_t kCacheMaxEntries = 1 << 18;
constexpr std::size_t kCacheMaxPieceBytes = 64;

struct PieceCache {
  uint64_t owner = 0;
  std::unordered_map<std::string, std::vector<int32_t>> entries;
};

PieceCache& piece_cache() {
  thread_local PieceCache cache;
  return cache;
}

uint64_t next_cache_owner() {
  static std::atomic<uint64_t> counter{0};
  return ++counter;
}

uint64_t hash_key(uint64_t key) {
  key ^= key >> 33;
  key *= 0xff51afd7ed558ccdULL;
  key ^= key >> 33;
  return key;
}

}  // namespace

BpeModel::BpeModel(std::array<int32_t, 256> byte_ids, std::vector<MergeRule> merges,
                   std::unordered_map<std::string, int32_t> whole_tokens, bool ignore_merges)
    : byte_ids_(byte_ids),
      merges_(std::move(merges)),
      whole_tokens_(std::move(whole_tokens)),
      ignore_merges_(ignore_merges),
      cache_owner_(next_cache_owner()) {
  build_pair_table();
}

BpeModel::BpeModel(BpeCharOptions options, std::vector<MergeRule> merges, bool ignore_merges)
    : merges_(std::move(merges)), ignore_merges_(ignore_merges), cache_owner_(next_cache_owner()) {
  byte_ids_.fill(-1);
  fallback_ids_.fill(-1);
  for (int byte = 0; byte < 256; ++byte) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", byte);
    auto it = options.vocab.find(name);
    if (it != options.vocab.end()) fallback_ids_[byte] = it->second;
  }
  char_options_ = std::make_shared<const BpeCharOptions>(std::move(options));
  build_pair_table();
}

void BpeModel::build_pair_table() {
  std::size_t capacity = 16;
  while (capacity < merges_.size() * 2) capacity *= 2;
  pair_table_.assign(capacity, PairEntry{});
  pair_mask_ = capacity - 1;
  for (std::size_t rank = 0; rank < merges_.size(); ++rank) {
    const MergeRule& rule = merges_[rank];
    uint64_t key = pair_key(rule.left, rule.right);
    uint64_t slot = hash_key(key) & pair_mask_;
    while (pair_table_[slot].key != kEmptyKey && pair_table_[slot].key != key) slot = (slot + 1) & pair_mask_;
    // A pair listed twice keeps its last rank, as Hugging Face's merge map does (a HashMap
    // collected in rank order: later entries replace earlier ones).
    pair_table_[slot] = PairEntry{key, int32_t(rank), rule.result};
  }
}

const BpeModel::PairEntry* BpeModel::find_pair(int32_t left, int32_t right) const {
  if (pair_table_.empty()) return nullptr;  // a default-constructed model has no merges
  uint64_t key = pair_key(left, right);
  uint64_t slot = hash_key(key) & pair_mask_;
  while (true) {
    const PairEntry& entry = pair_table_[slot];
    if (entry.key == key) return &entry;
    if (entry.key == kEmptyKey) return nullptr;
    slot = (slot + 1) & pair_mask_;
  }
}

void BpeModel::merge_by_scan(std::vector<int32_t>& symbols) const {
  constexpr int32_t kNoMerge = INT32_MAX;
  // rank_after[i]: rank of the pair (symbols[i], symbols[i + 1]).
  std::vector<int32_t> rank_after(symbols.size(), kNoMerge);
  auto rank_of = [&](std::size_t i) {
    const PairEntry* entry = find_pair(symbols[i], symbols[i + 1]);
    return entry ? entry->rank : kNoMerge;
  };
  for (std::size_t i = 0; i + 1 < symbols.size(); ++i) rank_after[i] = rank_of(i);
  while (symbols.size() > 1) {
    std::size_t best = 0;
    for (std::size_t i = 1; i + 1 < symbols.size(); ++i) {
      if (rank_after[i] < rank_after[best]) best = i;  // strict: the leftmost wins ties
    }
    if (rank_after[best] == kNoMerge) break;
    symbols[best] = merges_[rank_after[best]].result;
    symbols.erase(symbols.begin() + best + 1);
    rank_after.erase(rank_after.begin() + best + 1);
    rank_after[symbols.size() - 1] = kNoMerge;
    if (best + 1 < symbols.size()) rank_after[best] = rank_of(best);
    else rank_after[best] = kNoMerge;
    if (best > 0) rank_after[best - 1] = rank_of(best - 1);
  }
}

void BpeModel::merge_by_heap(std::vector<int32_t>& symbols) const {
  const std::size_t n = symbols.size();
  if (n < 2) return;
  // Symbols form a linked list over their original positions; a merged symbol keeps the
  // position of its left part, so position order stays text order.
  std::vector<int32_t> next(n), prev(n);
  std::vector<bool> alive(n, true);
  for (std::size_t i = 0; i < n; ++i) {
    next[i] = (i + 1 < n) ? int32_t(i + 1) : -1;
    prev[i] = int32_t(i) - 1;
  }
  struct Candidate {
    int32_t rank;
    int32_t position;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : position > other.position;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto push_pair_at = [&](int32_t position) {
    if (position < 0 || next[position] < 0) return;
    const PairEntry* entry = find_pair(symbols[position], symbols[next[position]]);
    if (entry) heap.push({entry->rank, position});
  };
  for (std::size_t i = 0; i + 1 < n; ++i) push_pair_at(int32_t(i));
  while (!heap.empty()) {
    Candidate top = heap.top();
    heap.pop();
    int32_t left = top.position;
    // Skip stale candidates: the symbol or its neighbour changed since this was pushed. Ranks
    // are unique per pair, so a matching rank means the same pair.
    if (!alive[left] || next[left] < 0) continue;
    const PairEntry* entry = find_pair(symbols[left], symbols[next[left]]);
    if (!entry || entry->rank != top.rank) continue;
    int32_t right = next[left];
    symbols[left] = entry->result;
    alive[right] = false;
    next[left] = next[right];
    if (next[right] >= 0) prev[next[right]] = left;
    push_pair_at(prev[left]);
    push_pair_at(left);
  }
  std::size_t out = 0;
  for (int32_t i = 0; i >= 0; i = next[i]) symbols[out++] = symbols[i];
  symbols.resize(out);
}

void BpeModel::merge(std::vector<int32_t>& symbols) const {
  if (symbols.size() <= kScanLimit) merge_by_scan(symbols);
  else merge_by_heap(symbols);
}

void BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>& symbols) const {
  const BpeCharOptions& o = *char_options_;
  std::optional<int32_t> pending_unk;  // an unknown run not yet emitted (fuse_unk joins them)
  std::string symbol;
  std::size_t pos = 0;
  while (pos < word.size()) {
    std::size_t length = utf8_sequence_length(word, pos);
    if (length == 0) length = 1;  // an invalid byte is a "character" of its own
    bool is_first = pos == 0;
    bool is_last = pos + length == word.size();
    symbol.clear();
    if (!is_first) symbol += o.continuing_subword_prefix;
    symbol.append(word.substr(pos, length));
    if (is_last) symbol += o.end_of_word_suffix;
    pos += length;
    auto it = o.vocab.find(symbol);
    if (it != o.vocab.end()) {
      if (pending_unk) symbols.push_back(*pending_unk);
      pending_unk.reset();
      symbols.push_back(it->second);
      continue;
    }
    if (o.byte_fallback) {
      // Every byte of the symbol (prefix and suffix included, as Hugging Face does) or none.
      bool all = true;
      for (char c : symbol) all = all && fallback_ids_[uint8_t(c)] >= 0;
      if (all) {
        for (char c : symbol) symbols.push_back(fallback_ids_[uint8_t(c)]);
        continue;
      }
    }
    if (o.unk_id) {
      if (pending_unk && !o.fuse_unk) symbols.push_back(*pending_unk);
      pending_unk = *o.unk_id;
    }
    // Without an unknown token, a character outside the vocabulary is dropped (Hugging Face).
  }
  if (pending_unk) symbols.push_back(*pending_unk);
}

void BpeModel::encode_piece_uncached(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (char_options_) {
    if (ignore_merges_) {
      auto it = char_options_->vocab.find(std::string(piece));
      if (it != char_options_->vocab.end()) {
        out.push_back(it->second);
        return;
      }
    }
    std::vector<int32_t> symbols;
    initial_symbols(piece, symbols);
    merge(symbols);
    out.insert(out.end(), symbols.begin(), symbols.end());
    return;
  }
  if (ignore_merges_) {
    auto it = whole_tokens_.find(std::string(piece));
    if (it != whole_tokens_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  std::vector<int32_t> symbols(piece.size());
  for (std::size_t i = 0; i < piece.size(); ++i) symbols[i] = byte_ids_[uint8_t(piece[i])];
  merge(symbols);
  out.insert(out.end(), symbols.begin(), symbols.end());
}

void BpeModel::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() == 1 && !char_options_) {
    out.push_back(byte_ids_[uint8_t(piece[0])]);
    return;
  }
  if (piece.size() > kCacheMaxPieceBytes) {
    encode_piece_uncached(piece, out);
    return;
  }
  PieceCache& cache = piece_cache();
  if (cache.owner != cache_owner_) {
    cache.entries.clear();
    cache.owner = cache_owner_;
  }
  std::string key(piece);
  auto it = cache.entries.find(key);
  if (it != cache.entries.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  std::size_t first = out.size();
  encode_piece_uncached(piece, out);
  if (cache.entries.size() >= kCacheMaxEntries) cache.entries.clear();
  cache.entries.emplace(std::move(key), std::vector<int32_t>(out.begin() + first, out.end()));
}

}  // namespace nextn::tokenizer
