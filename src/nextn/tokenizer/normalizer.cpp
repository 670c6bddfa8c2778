#include "nextn/tokenizer/normalizer.h"

#include "nextn/tokenizer/regex_pattern.h"
#include "nextn/tokenizer/unicode.h"
#include "nextn/tokenizer/utf8.h"

namespace nextn::tokenizer {
namespace {

// Strip: Rust's trim_start_matches / trim_end_matches(char::is_whitespace).
std::string strip_whitespace(std::string_view text, bool left, bool right) {
  std::size_t begin = 0, end = text.size();
  if (left) {
    CharCursor cursor{text};
    uint32_t c = 0;
    std::size_t length = 0;
    while (cursor.next(c, length) && is_whitespace_char(c)) begin = cursor.pos;
  }
  if (right) {
    while (end > begin) {
      std::size_t start = end - 1;
      while (start > begin && (uint8_t(text[start]) & 0xC0) == 0x80) --start;
      std::size_t length = 0;
      uint32_t c = utf8_decode(text, start, length);
      if (length != end - start || !is_whitespace_char(c)) break;
      end = start;
    }
  }
  return std::string(text.substr(begin, end - begin));
}

}  // namespace

std::string replace_all_literal(std::string_view text, std::string_view literal, std::string_view content) {
  if (literal.empty()) return std::string(text);
  std::string out;
  std::size_t pos = 0;
  while (true) {
    std::size_t found = text.find(literal, pos);
    if (found == std::string_view::npos) break;
    out.append(text.substr(pos, found - pos));
    out.append(content);
    pos = found + literal.size();
  }
  out.append(text.substr(pos));
  return out;
}

std::string replace_all_regex(std::string_view text, const RegexPattern& regex, std::string_view content) {
  // Every match, empty ones included, is replaced by `content` as it is (no $1 expansion).
  std::string out;
  std::size_t pos = 0;
  regex.for_each_match(text, [&](std::size_t start, std::size_t end) {
    out.append(text.substr(pos, start - pos));
    out.append(content);
    pos = end;
  });
  out.append(text.substr(pos));
  return out;
}

// Whether applying `step` to `text` drops its first character: a left Strip when the text starts
// with white space, a Replace by nothing whose first match starts the text.
bool Normalizer::removes_first_character(const Step& step, std::string_view text) {
  if (text.empty()) return false;
  switch (step.spec.kind) {
    case NormalizerStep::Kind::kStrip: {
      std::size_t length = 0;
      uint32_t c = utf8_decode(text, 0, length);
      return step.spec.strip_left && length > 0 && is_whitespace_char(c);
    }
    case NormalizerStep::Kind::kReplace: {
      if (!step.spec.content.empty()) return false;
      if (!step.regex) return !step.spec.pattern.empty() && text.substr(0, step.spec.pattern.size()) == step.spec.pattern;
      bool at_start = false;
      std::size_t start = 0, end = 0;
      if (step.regex->find(text, 0, start, end)) at_start = start == 0 && end > 0;
      return at_start;
    }
    default:
      return false;
  }
}

Normalizer::Normalizer(const NormalizerSpec& spec) {
  for (const NormalizerStep& step : spec.steps) {
    Step compiled{step, nullptr};
    if (step.kind == NormalizerStep::Kind::kReplace && step.pattern_is_regex) {
      compiled.regex = std::make_shared<RegexPattern>(step.pattern);
    }
    steps_.push_back(std::move(compiled));
  }
}

std::string Normalizer::normalize(std::string_view input, bool* keeps_start) const {
  std::string text(input);
  bool start_kept = true;
  for (const Step& step : steps_) {
    if (keeps_start && start_kept) start_kept = !removes_first_character(step, text);
    using Kind = NormalizerStep::Kind;
    switch (step.spec.kind) {
      case Kind::kNfc: text = normalize_unicode(text, NormalForm::kNfc); break;
      case Kind::kNfd: text = normalize_unicode(text, NormalForm::kNfd); break;
      case Kind::kNfkc: text = normalize_unicode(text, NormalForm::kNfkc); break;
      case Kind::kNfkd: text = normalize_unicode(text, NormalForm::kNfkd); break;
      case Kind::kLowercase: text = lowercase_unicode(text); break;
      case Kind::kStrip: text = strip_whitespace(text, step.spec.strip_left, step.spec.strip_right); break;
      case Kind::kReplace:
        text = step.regex ? replace_all_regex(text, *step.regex, step.spec.content)
                          : replace_all_literal(text, step.spec.pattern, step.spec.content);
        break;
      case Kind::kPrepend:
        // Hugging Face prepends only to non-empty text.
        if (!text.empty()) text = step.spec.content + text;
        break;
    }
  }
  if (keeps_start) *keeps_start = start_kept;
  return text;
}

}  // namespace nextn::tokenizer
