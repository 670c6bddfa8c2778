#include "nextn/tokenizer/added_tokens.h"

#include <algorithm>
#include <cstring>

namespace nextn::tokenizer {

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens) {
  for (const AddedToken& token : tokens) {
    if (token.content.empty()) continue;
    candidates_.push_back({token.content, token.id});
    is_first_byte_[uint8_t(token.content[0])] = true;
  }
  std::stable_sort(candidates_.begin(), candidates_.end(),
                   [](const Candidate& a, const Candidate& b) { return a.content.size() > b.content.size(); });
}

bool AddedTokenMatcher::find(std::string_view text, std::size_t from, std::size_t& start,
                             std::size_t& length, int32_t& id) const {
  if (candidates_.empty()) return false;
  for (std::size_t pos = from; pos < text.size(); ++pos) {
    if (!is_first_byte_[uint8_t(text[pos])]) continue;
    std::size_t left = text.size() - pos;
    for (const Candidate& candidate : candidates_) {
      const std::string& content = candidate.content;
      if (content.size() <= left && std::memcmp(text.data() + pos, content.data(), content.size()) == 0) {
        start = pos;
        length = content.size();
        id = candidate.id;
        return true;
      }
    }
  }
  return false;
}

namespace {

void split_with(std::string_view text, const AddedTokenMatcher& matcher, std::vector<TextSegment>& out) {
  std::size_t pos = 0;
  std::size_t start = 0, length = 0;
  int32_t id = -1;
  while (matcher.find(text, pos, start, length, id)) {
    if (start > pos) out.push_back({text.substr(pos, start - pos), -1});
    out.push_back({text.substr(start, length), id});
    pos = start + length;
  }
  if (pos < text.size()) out.push_back({text.substr(pos), -1});
}

}  // namespace

void split_on_added_tokens(std::string_view text, const AddedTokenMatcher& first_pass,
                           const AddedTokenMatcher& second_pass, std::vector<TextSegment>& out) {
  if (second_pass.empty()) {
    split_with(text, first_pass, out);
    return;
  }
  std::vector<TextSegment> first;
  split_with(text, first_pass, first);
  for (const TextSegment& segment : first) {
    if (segment.added_id >= 0) out.push_back(segment);
    else split_with(segment.text, second_pass, out);
  }
}

}  // namespace nextn::tokenizer
