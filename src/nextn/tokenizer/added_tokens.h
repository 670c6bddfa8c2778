// Added tokens (special tokens such as BOS/EOS and FIM markers, and any other `added_tokens` of a
// tokenizer.json) are cut out of the text before pre-tokenisation, so they are never split.
// Matching follows Hugging Face's AddedVocabulary: leftmost-longest, first over the tokens with
// normalized=false, then, after the normalizer, over the remaining text with the normalized=true
// ones (matched by their normalized content). lstrip/rstrip take the white space beside a match
// into the token; single_word keeps only matches with no word character on either side.
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
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool operator==(const AddedToken& other) const {
    return id == other.id && content == other.content && special == other.special &&
           normalized == other.normalized && single_word == other.single_word && lstrip == other.lstrip &&
           rstrip == other.rstrip;
  }
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // `match_texts[i]`, when given, is what tokens[i] matches (its normalized content).
  explicit AddedTokenMatcher(const std::vector<AddedToken>& tokens,
                             const std::vector<std::string>* match_texts = nullptr);

  struct Candidate {
    std::string content;
    int32_t id;
    bool single_word, lstrip, rstrip;
  };
  // The leftmost, then longest, token occurring in text[from, end).
  const Candidate* find(std::string_view text, std::size_t from, std::size_t& start) const;
  bool empty() const { return candidates_.empty(); }

 private:
  std::vector<Candidate> candidates_;  // longest first
  std::array<bool, 256> is_first_byte_{};
};

// A run of ordinary text (added_id < 0) or one added token. `offset`: where it starts in the text
// that was split.
struct TextSegment {
  std::string_view text;
  int32_t added_id = -1;
  std::size_t offset = 0;
};

// Hugging Face's AddedVocabulary::split_with_indices over one text.
void split_on_added_tokens(std::string_view text, const AddedTokenMatcher& matcher, std::vector<TextSegment>& out);

}  // namespace nextn::tokenizer
