#include "nextn/tokenizer/pretokenizer.h"

#include <algorithm>

#include "nextn/tokenizer/byte_level.h"
#include "nextn/tokenizer/regex_pattern.h"
#include "nextn/tokenizer/simple_split.h"
#include "nextn/tokenizer/unicode.h"
#include "nextn/tokenizer/utf8.h"
#include "nextn/util/error.h"

namespace nextn::tokenizer {

const char* const kGpt2SplitPattern =
    R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)re";

namespace {

// The Whitespace pre-tokenizer's regex, \w+|[^\w\s]+, with \w spelled out as Rust's regex crate
// (which Hugging Face uses for it) defines it: alphabetic, marks, decimal digits, connector
// punctuation and the joiners. PCRE2's \w differs (all numbers, no marks).
const char* const kWhitespacePattern =
    R"re([\p{L}\p{Nl}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}]+|[^\p{L}\p{Nl}\p{M}\p{Nd}\p{Pc}\x{200C}\x{200D}\s]+)re";

}  // namespace

bool PreTokenizerStep::operator==(const PreTokenizerStep& other) const {
  return kind == other.kind && pattern == other.pattern && behavior == other.behavior && invert == other.invert &&
         individual_digits == other.individual_digits && add_prefix_space == other.add_prefix_space &&
         trim_offsets == other.trim_offsets && use_regex == other.use_regex && replacement == other.replacement &&
         prepend_scheme == other.prepend_scheme && split == other.split;
}

bool PreTokenizerSpec::is_split_then_byte_level() const {
  if (!present || steps.empty()) return false;
  for (std::size_t i = 0; i + 1 < steps.size(); ++i) {
    const PreTokenizerStep& s = steps[i];
    if (s.kind != PreTokenizerStep::Kind::kSplit || s.behavior != SplitBehavior::kIsolated || s.invert) return false;
  }
  const PreTokenizerStep& last = steps.back();
  return last.kind == PreTokenizerStep::Kind::kByteLevel && !last.add_prefix_space;
}

PreTokenizerStep split_step(std::string pattern, bool is_literal, SplitBehavior behavior) {
  PreTokenizerStep step;
  step.kind = PreTokenizerStep::Kind::kSplit;
  step.pattern = {std::move(pattern), is_literal};
  step.behavior = behavior;
  return step;
}

PreTokenizerStep byte_level_step(bool use_regex) {
  PreTokenizerStep step;
  step.kind = PreTokenizerStep::Kind::kByteLevel;
  step.use_regex = use_regex;
  return step;
}

namespace {

// The third Split of DeepSeek-V3's pre-tokenizer. `newlines` spells the two line-break
// characters of its classes: deepseek-ai/DeepSeek-V3's tokenizer.json has them as raw CR and LF
// characters inside the pattern; nextn releases before tokenizer.json conformance wrote the
// escapes \r \n (the same regex).
std::string deepseek_v3_word_pattern(const std::string& newlines) {
  return "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^" + newlines + "\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[" +
         newlines + "]*|\\s*[" + newlines + "]+|\\s+(?!\\S)|\\s+";
}

PreTokenizerSpec deepseek_v3_with_newlines(const std::string& newlines) {
  // The three Split steps of deepseek-ai/DeepSeek-V3's tokenizer.json (checked against the file
  // by tests/tokenizer/conformance.test.mjs). The CJK class is U+4E00-U+9FA5 (CJK ideographs),
  // U+3040-U+309F (hiragana) and U+30A0-U+30FF (katakana).
  PreTokenizerSpec spec;
  spec.steps.push_back(split_step(R"re(\p{N}{1,3})re"));
  spec.steps.push_back(split_step("[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+"));
  spec.steps.push_back(split_step(deepseek_v3_word_pattern(newlines)));
  spec.steps.push_back(byte_level_step(false));
  return spec;
}

}  // namespace

PreTokenizerSpec deepseek_v3_pre_tokenizer() { return deepseek_v3_with_newlines("\r\n"); }

PreTokenizerSpec gpt2_pre_tokenizer() {
  PreTokenizerSpec spec;
  spec.as_sequence = false;
  spec.steps.push_back(byte_level_step(true));
  return spec;
}

PreTokenizerSpec simple_pre_tokenizer() {
  PreTokenizerSpec spec;
  spec.steps.push_back(split_step(kSimpleSplitPattern));
  spec.steps.push_back(byte_level_step(false));
  return spec;
}

PreTokenizerSpec pre_tokenizer_by_name(const std::string& name) {
  if (name == "deepseek-v3") return deepseek_v3_pre_tokenizer();
  if (name == "gpt2") return gpt2_pre_tokenizer();
  if (name == "simple") return simple_pre_tokenizer();
  fail("unknown pre-tokenizer '", name, "' (choose deepseek-v3, gpt2 or simple)");
}

std::string pre_tokenizer_name(const PreTokenizerSpec& spec) {
  if (spec == deepseek_v3_pre_tokenizer() || spec == deepseek_v3_with_newlines("\\r\\n")) return "deepseek-v3";
  if (spec == gpt2_pre_tokenizer()) return "gpt2";
  if (spec == simple_pre_tokenizer()) return "simple";
  return "custom";
}

std::string_view PieceArena::keep(std::string text) {
  strings_.push_back(std::move(text));
  return strings_.back();
}

namespace {

using Piece = PreTokenizer::Piece;

// A stretch of a piece: a match of the step's pattern or a gap between matches (Hugging Face's
// Pattern::find_matches, whose results cover the piece).
struct Span {
  std::size_t start;
  std::size_t end;
  bool is_match;
};

// Regex matches (empty ones too, as Oniguruma finds them) and the gaps between them.
void regex_spans(std::string_view text, const RegexPattern& regex, std::vector<Span>& spans) {
  std::size_t previous = 0;
  regex.for_each_match(text, [&](std::size_t start, std::size_t end) {
    if (start > previous) spans.push_back({previous, start, false});
    spans.push_back({start, end, true});
    previous = end;
  });
  if (previous < text.size()) spans.push_back({previous, text.size(), false});
}

// Character predicates: every matching character is a match of its own. Invalid bytes never match.
template <typename Predicate>
void char_spans(std::string_view text, Predicate matches, std::vector<Span>& spans) {
  std::size_t previous = 0;
  CharCursor cursor{text};
  uint32_t c = 0;
  std::size_t length = 0;
  while (cursor.next(c, length)) {
    if (c == UINT32_MAX || !matches(c)) continue;
    std::size_t start = cursor.pos - length;
    if (start > previous) spans.push_back({previous, start, false});
    spans.push_back({start, cursor.pos, true});
    previous = cursor.pos;
  }
  if (previous < text.size()) spans.push_back({previous, text.size(), false});
}

// Hugging Face's NormalizedString::split: invert, then keep, drop or merge the spans by the
// behaviour. Empty results are dropped (PreTokenizedString::split).
void split_spans(const Piece& piece, std::vector<Span>& spans, SplitBehavior behavior, bool invert,
                 std::vector<Piece>& out) {
  if (invert) {
    for (Span& span : spans) span.is_match = !span.is_match;
  }
  struct Kept {
    std::size_t start, end;
    bool remove;
  };
  std::vector<Kept> kept;
  kept.reserve(spans.size());
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const Span& s : spans) kept.push_back({s.start, s.end, false});
      break;
    case SplitBehavior::kRemoved:
      for (const Span& s : spans) kept.push_back({s.start, s.end, s.is_match});
      break;
    case SplitBehavior::kContiguous:
      for (const Span& s : spans) {
        if (s.is_match == previous_match && !kept.empty()) kept.back().end = s.end;
        else kept.push_back({s.start, s.end, false});
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const Span& s : spans) {
        if (s.is_match && !previous_match && !kept.empty()) kept.back().end = s.end;
        else kept.push_back({s.start, s.end, false});
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !kept.empty()) kept.back().start = it->start;
        else kept.push_back({it->start, it->end, false});
        previous_match = it->is_match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
  }
  for (const Kept& k : kept) {
    if (k.remove || k.end == k.start) continue;
    out.push_back({piece.text.substr(k.start, k.end - k.start), piece.at_input_start && k.start == 0});
  }
}

// The common case, without building spans: Isolated, not inverted, a regex. Every match and
// every gap is a piece (an empty match makes none, but still ends the gap before it).
void split_isolated(const Piece& piece, const RegexPattern& regex, std::vector<Piece>& out) {
  std::string_view text = piece.text;
  std::size_t gap_start = 0;
  auto emit = [&](std::size_t b, std::size_t e) {
    if (e > b) out.push_back({text.substr(b, e - b), piece.at_input_start && b == 0});
  };
  regex.for_each_match(text, [&](std::size_t start, std::size_t end) {
    emit(gap_start, start);
    emit(start, end);
    gap_start = end;
  });
  emit(gap_start, text.size());
}

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && text.substr(0, prefix.size()) == prefix;
}

PieceArena& require_arena(PieceArena* arena) {
  NEXTN_CHECK(arena != nullptr, "this pre-tokenizer rewrites text and needs a piece arena");
  return *arena;
}

}  // namespace

PreTokenizer::PreTokenizer(PreTokenizerSpec spec) : spec_(std::move(spec)) {
  using Kind = PreTokenizerStep::Kind;
  for (std::size_t i = 0; i < spec_.steps.size(); ++i) {
    const PreTokenizerStep& s = spec_.steps[i];
    Step step{s, nullptr};
    if (s.kind == Kind::kSplit) {
      if (!s.pattern.is_literal && s.pattern.pattern == kSimpleSplitPattern && s.behavior == SplitBehavior::kIsolated &&
          !s.invert) {
        step.builtin_scanner = true;  // the same split as the regex, several times faster
      } else if (!s.pattern.is_literal || !s.pattern.pattern.empty()) {
        step.regex = std::make_shared<RegexPattern>(s.pattern.is_literal ? escape_regex_literal(s.pattern.pattern)
                                                                          : s.pattern.pattern);
      }
    } else if (s.kind == Kind::kWhitespace) {
      step.regex = std::make_shared<RegexPattern>(kWhitespacePattern);
    } else if (s.kind == Kind::kByteLevel) {
      if (s.use_regex) step.regex = std::make_shared<RegexPattern>(kGpt2SplitPattern);
      step.map_bytes = i + 1 < spec_.steps.size();
    } else if (s.kind == Kind::kMetaspace) {
      NEXTN_CHECK(utf8_sequence_length(s.replacement, 0) == s.replacement.size() && !s.replacement.empty(),
                  "Metaspace replacement must be one character");
    }
    steps_.push_back(std::move(step));
  }
  defers_byte_level_ = spec_.present && !spec_.steps.empty() && spec_.steps.back().kind == Kind::kByteLevel;
}

bool PreTokenizer::all_regexes_jit_compiled() const {
  for (const Step& step : steps_) {
    if (step.regex && !step.regex->jit_compiled()) return false;
  }
  return true;
}

void PreTokenizer::apply(const Step& step, const Piece& piece, std::vector<Piece>& out, PieceArena* arena) const {
  using Kind = PreTokenizerStep::Kind;
  const PreTokenizerStep& s = step.spec;
  std::vector<Span> spans;
  switch (s.kind) {
    case Kind::kSplit:
      if (step.builtin_scanner) {
        std::vector<std::string_view> views;
        simple_split(piece.text, views);
        for (std::string_view v : views) out.push_back({v, piece.at_input_start && v.data() == piece.text.data()});
        return;
      }
      if (!step.regex) {  // an empty literal matches nothing
        spans.push_back({0, piece.text.size(), false});
      } else if (s.behavior == SplitBehavior::kIsolated && !s.invert) {
        split_isolated(piece, *step.regex, out);
        return;
      } else {
        regex_spans(piece.text, *step.regex, spans);
      }
      split_spans(piece, spans, s.behavior, s.invert, out);
      return;
    case Kind::kDigits:
      char_spans(piece.text, is_numeric_char, spans);
      split_spans(piece, spans, s.individual_digits ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, false, out);
      return;
    case Kind::kPunctuation:
      char_spans(piece.text, is_punctuation_char, spans);
      split_spans(piece, spans, s.behavior, false, out);
      return;
    case Kind::kWhitespace:
      regex_spans(piece.text, *step.regex, spans);
      split_spans(piece, spans, SplitBehavior::kRemoved, true, out);
      return;
    case Kind::kWhitespaceSplit:
      char_spans(piece.text, is_whitespace_char, spans);
      split_spans(piece, spans, SplitBehavior::kRemoved, false, out);
      return;
    case Kind::kMetaspace: {
      Piece replaced = piece;
      if (piece.text.find(' ') != std::string_view::npos) {
        std::string text;
        for (char c : piece.text) {
          if (c == ' ') text += s.replacement;
          else text += c;
        }
        replaced.text = require_arena(arena).keep(std::move(text));
      }
      bool prepend = s.prepend_scheme == PrependScheme::kAlways ||
                     (s.prepend_scheme == PrependScheme::kFirst && piece.at_input_start);
      if (prepend && !starts_with(replaced.text, s.replacement)) {
        replaced.text = require_arena(arena).keep(s.replacement + std::string(replaced.text));
      }
      if (!s.split) {
        out.push_back(replaced);
        return;
      }
      std::string_view r = s.replacement;
      std::size_t previous = 0;
      for (std::size_t pos = replaced.text.find(r); pos != std::string_view::npos; pos = replaced.text.find(r, pos + r.size())) {
        if (pos > previous) spans.push_back({previous, pos, false});
        spans.push_back({pos, pos + r.size(), true});
        previous = pos + r.size();
      }
      if (previous < replaced.text.size()) spans.push_back({previous, replaced.text.size(), false});
      split_spans(replaced, spans, SplitBehavior::kMergedWithNext, false, out);
      return;
    }
    case Kind::kByteLevel: {
      Piece prefixed = piece;
      if (s.add_prefix_space && !starts_with(piece.text, " ")) {
        prefixed.text = require_arena(arena).keep(" " + std::string(piece.text));
      }
      std::size_t first = out.size();
      if (step.regex) split_isolated(prefixed, *step.regex, out);
      else if (!prefixed.text.empty()) out.push_back(prefixed);
      if (step.map_bytes) {
        for (std::size_t i = first; i < out.size(); ++i) out[i].text = require_arena(arena).keep(bytes_to_byte_level(out[i].text));
      }
      return;
    }
  }
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& pieces, PieceArena* arena,
                         bool at_input_start) const {
  if (text.empty()) return;
  if (steps_.empty()) {
    pieces.push_back(text);
    return;
  }
  std::vector<Piece> current{{text, at_input_start}};
  std::vector<Piece> next;
  for (const Step& step : steps_) {
    next.clear();
    for (const Piece& piece : current) apply(step, piece, next, arena);
    current.swap(next);
  }
  for (const Piece& piece : current) pieces.push_back(piece.text);
}

}  // namespace nextn::tokenizer
