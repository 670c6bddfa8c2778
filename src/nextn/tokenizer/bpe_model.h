// The BPE model proper: turns one pre-token piece (raw bytes) into token ids. Each byte starts as
// its own symbol; then, as long as some adjacent pair has a merge rule, the pair with the lowest
// rank (the earliest learned merge) is merged, the leftmost one when a rank occurs several times.
// This is Hugging Face's BPE::merge_word.
//
// Two ways to form the first symbols: byte mode (byte-level tokenizers whose pre-tokenizer left
// the byte-level mapping to the model: one symbol per raw byte) and character mode (any other
// BPE: one symbol per character looked up in the vocabulary, with continuing_subword_prefix,
// end_of_word_suffix, byte_fallback and the unknown token as the file sets them).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <memory>
#include <vector>

namespace nextn::tokenizer {

struct MergeRule {
  int32_t left = 0;
  int32_t right = 0;
  int32_t result = 0;
};

// Character mode's vocabulary and options (Hugging Face's BPE fields of the same names).
struct BpeCharOptions {
  std::unordered_map<std::string, int32_t> vocab;  // token text -> id
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
  bool byte_fallback = false;  // a character not in the vocabulary becomes its bytes' <0xXX> tokens
  std::optional<int32_t> unk_id;
  bool fuse_unk = false;
};

class BpeModel {
 public:
  BpeModel() = default;
  // byte_ids[b]: the token of the single byte b. merges: in rank order. whole_tokens: raw bytes
  // -> id of every model token, used when ignore_merges is set (a piece that is a token is taken
  // whole, without merging).
  BpeModel(std::array<int32_t, 256> byte_ids, std::vector<MergeRule> merges,
           std::unordered_map<std::string, int32_t> whole_tokens, bool ignore_merges);
  // Character mode.
  BpeModel(BpeCharOptions options, std::vector<MergeRule> merges, bool ignore_merges);

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
  bool byte_mode() const { return !char_options_; }

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

  void build_pair_table();
  // Character mode's first symbols (HF merge_word before merging).
  void initial_symbols(std::string_view word, std::vector<int32_t>& symbols) const;

  std::array<int32_t, 256> byte_ids_{};
  std::shared_ptr<const BpeCharOptions> char_options_;  // null in byte mode
  std::array<int32_t, 256> fallback_ids_{};             // <0xXX> tokens, -1 where missing
  std::vector<MergeRule> merges_;
  std::vector<PairEntry> pair_table_;
  uint64_t pair_mask_ = 0;
  std::unordered_map<std::string, int32_t> whole_tokens_;
  bool ignore_merges_ = false;
  uint64_t cache_owner_ = 0;  // identifies this model's entries in the per-thread piece cache
};

}  // namespace nextn::tokenizer
