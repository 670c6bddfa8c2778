#include "nextn/tokenizer/added_tokens.h"

#include <algorithm>
#include <cstring>

#include "nextn/tokenizer/unicode.h"
#include "nextn/tokenizer/utf8.h"

namespace nextn::tokenizer {

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens, const std::vector<std::string>* match_texts) {
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const AddedToken& token = tokens[i];
    std::string content = match_texts ? (*match_texts)[i] : token.content;
    if (content.empty()) continue;
    is_first_byte_[uint8_t(content[0])] = true;
    candidates_.push_back({std::move(content), token.id, token.single_word, token.lstrip, token.rstrip});
  }
  std::stable_sort(candidates_.begin(), candidates_.end(),
                   [](const Candidate& a, const Candidate& b) { return a.content.size() > b.content.size(); });
}

const AddedTokenMatcher::Candidate* AddedTokenMatcher::find(std::string_view text, std::size_t from,
                                                            std::size_t& start) const {
  if (candidates_.empty()) return nullptr;
  for (std::size_t pos = from; pos < text.size(); ++pos) {
    if (!is_first_byte_[uint8_t(text[pos])]) continue;
    std::size_t left = text.size() - pos;
    for (const Candidate& candidate : candidates_) {
      const std::string& content = candidate.content;
      if (content.size() <= left && std::memcmp(text.data() + pos, content.data(), content.size()) == 0) {
        start = pos;
        return &candidate;
      }
    }
  }
  return nullptr;
}

namespace {

// The character that ends text[0, end) / starts text[begin, size); UINT32_MAX when none or invalid.
uint32_t char_before(std::string_view text, std::size_t end) {
  if (end == 0) return UINT32_MAX;
  std::size_t start = end - 1;
  while (start > 0 && end - start < 4 && (uint8_t(text[start]) & 0xC0) == 0x80) --start;
  std::size_t length = 0;
  uint32_t c = utf8_decode(text, start, length);
  return length == end - start ? c : UINT32_MAX;
}

uint32_t char_at(std::string_view text, std::size_t begin) {
  std::size_t length = 0;
  uint32_t c = utf8_decode(text, begin, length);
  return length == 0 ? UINT32_MAX : c;
}

// \w of Rust's regex crate, which Hugging Face uses for single_word.
bool is_word_char(uint32_t c) { return c != UINT32_MAX && is_regex_word_char(c); }

// Start of the white space that ends text[0, end).
std::size_t whitespace_run_before(std::string_view text, std::size_t end) {
  while (end > 0) {
    uint32_t c = char_before(text, end);
    if (c == UINT32_MAX || !is_whitespace_char(c)) break;
    std::size_t length = 1;
    while (length < end && (uint8_t(text[end - length]) & 0xC0) == 0x80) ++length;
    end -= length;
  }
  return end;
}

// End of the white space that starts text[begin, size).
std::size_t whitespace_run_after(std::string_view text, std::size_t begin) {
  CharCursor cursor{text, begin};
  uint32_t c = 0;
  std::size_t length = 0;
  std::size_t end = begin;
  while (cursor.next(c, length) && c != UINT32_MAX && is_whitespace_char(c)) end = cursor.pos;
  return end;
}

}  // namespace

void split_on_added_tokens(std::string_view text, const AddedTokenMatcher& matcher, std::vector<TextSegment>& out) {
  std::size_t search_from = 0, start_offset = 0, start = 0;
  while (const AddedTokenMatcher::Candidate* match = matcher.find(text, search_from, start)) {
    std::size_t stop = start + match->content.size();
    search_from = stop;
    if (match->single_word) {
      bool space_before = start == 0 || !is_word_char(char_before(text, start));
      bool space_after = stop == text.size() || !is_word_char(char_at(text, stop));
      if (!space_before || !space_after) continue;
    }
    if (match->lstrip) start = std::max(whitespace_run_before(text, start), start_offset);
    if (match->rstrip) stop = whitespace_run_after(text, stop);
    if (start_offset < start) out.push_back({text.substr(start_offset, start - start_offset), -1, start_offset});
    out.push_back({text.substr(start, stop - start), match->id, start});
    start_offset = stop;
  }
  if (start_offset < text.size()) out.push_back({text.substr(start_offset), -1, start_offset});
}

}  // namespace nextn::tokenizer
