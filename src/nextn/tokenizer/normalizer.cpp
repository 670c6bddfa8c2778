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

Normalizer::Normalizer(const NormalizerSpec& spec) {
  for (const NormalizerStep& step : spec.steps) {
    Step compiled{step, nullptr};
    if (step.kind == NormalizerStep::Kind::kReplace && step.pattern_is_regex) {
      compiled.regex = std::make_shared<RegexPattern>(step.pattern);
    }
    steps_.push_back(std::move(compiled));
  }
}

std::string Normalizer::normalize(std::string_view input) const {
  std::string text(input);
  for (const Step& step : steps_) {
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
  return text;
}

}  // namespace nextn::tokenizer
