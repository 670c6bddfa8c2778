// The BPE model proper: turns one pre-token piece (raw bytes) into token ids. Each byte starts as
// its own symbol; then, as long as some adjacent pair has a merge rule, the pair with the lowest
// rank (the earliest learned merge) is merged, the leftmost one when a rank occurs several times.
// This is Hugging Face's BPE::merge_word.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace nextn::tokenizer {

struct MergeRule {
  int32_t left = 0;
  int32_t right = 0;
  int32_t result = 0;
};

class BpeModel {
 public:
  BpeModel() = default;
  // byte_ids[b]: the token of the single byte b. merges: in rank order. whole_tokens: raw bytes
  // -> id of every model token, used when ignore_merges is set (a piece that is a token is taken
  // whole, without merging).
  BpeModel(std::array<int32_t, 256> byte_ids, std::vector<MergeRule> merges,
           std::unordered_map<std::string, int32_t> whole_tokens, bool ignore_merges);

  // Appends the ids of `piece`. Results are cached per thread (see encode_piece's .cpp).
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
  void encode_piece_uncached(std::string_view piece, std::vector<int32_t>& out) const;

  // The merge loop on a symbol sequence, by the algorithm encode_piece picks for its length, and
  // each algorithm on its own (a linear scan per merge for short pieces, a heap for long ones;
  // they must agree, which the tests check).
  void merge(std::vector<int32_t>& symbols) const;
  void merge_by_scan(std::vector<int32_t>& symbols) const;
  void merge_by_heap(std::vector<int32_t>& symbols) const;

  std::size_t num_merges() const { return merges_.size(); }

 private:
  struct PairEntry {
    uint64_t key = kEmptyKey;
    int32_t rank = 0;
    int32_t result = 0;
  };
  static constexpr uint64_t kEmptyKey = ~uint64_t(0);
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
  }
  // The merge rule of an adjacent pair, or nullptr. An open-addressing table: this lookup is the
  // inner loop of encoding.
  const PairEntry* find_pair(int32_t left, int32_t right) const;

  std::array<int32_t, 256> byte_ids_{};
  std::vector<MergeRule> merges_;
  std::vector<PairEntry> pair_table_;
  uint64_t pair_mask_ = 0;
  std::unordered_map<std::string, int32_t> whole_tokens_;
  bool ignore_merges_ = false;
  uint64_t cache_owner_ = 0;  // identifies this model's entries in the per-thread piece cache
};

}  // namespace nextn::tokenizer
