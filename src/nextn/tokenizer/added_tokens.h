// Added tokens (special tokens such as BOS/EOS and FIM markers, and any other `added_tokens` of a
// tokenizer.json) are cut out of the text before pre-tokenisation, so they are never split.
// Matching follows Hugging Face's AddedVocabulary: leftmost-longest, first over the tokens with
// normalized=false, then over the remaining text with the normalized=true ones (nextn supports
// no normalizer, so the second pass sees the text unchanged).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace nextn::tokenizer {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = true;
  bool normalized = false;
  // single_word, lstrip and rstrip must be false: loading a file that sets them is an error.
  bool operator==(const AddedToken& other) const {
    return id == other.id && content == other.content && special == other.special &&
           normalized == other.normalized;
  }
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(const std::vector<AddedToken>& tokens);

  // The leftmost, then longest, token occurring in text[from, end).
  bool find(std::string_view text, std::size_t from, std::size_t& start, std::size_t& length,
            int32_t& id) const;
  bool empty() const { return candidates_.empty(); }

 private:
  struct Candidate {
    std::string content;
    int32_t id;
  };
  std::vector<Candidate> candidates_;  // longest first
  std::array<bool, 256> is_first_byte_{};
};

// A run of ordinary text (added_id < 0) or one added token.
struct TextSegment {
  std::string_view text;
  int32_t added_id = -1;
};

void split_on_added_tokens(std::string_view text, const AddedTokenMatcher& first_pass,
                           const AddedTokenMatcher& second_pass, std::vector<TextSegment>& out);

}  // namespace nextn::tokenizer
