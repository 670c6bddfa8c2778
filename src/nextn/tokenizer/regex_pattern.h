// One compiled PCRE2 pattern for pre-tokenisation: UTF-8 with Unicode properties (\p{L}, \s as
// Unicode white space) and JIT where the library has it. Subjects may be invalid UTF-8
// (PCRE2_MATCH_INVALID_UTF): invalid bytes never match, so they end up in the gaps between
// matches, which Isolated splitting keeps as pieces of their own.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

struct pcre2_real_code_8;

namespace nextn::tokenizer {

class RegexPattern {
 public:
  // Throws nextn::Error naming the pattern, the offset and PCRE2's reason when it does not compile.
  explicit RegexPattern(std::string pattern);
  ~RegexPattern();
  RegexPattern(const RegexPattern&) = delete;
  RegexPattern& operator=(const RegexPattern&) = delete;

  // Finds the leftmost match in subject[from, end). Returns false when there is none; matches may
  // be empty. Thread-safe: the match scratch space is per thread.
  bool find(std::string_view subject, std::size_t from, std::size_t& match_start,
            std::size_t& match_end) const;

  // Every match left to right as Oniguruma's find_iter gives them (the engine Hugging Face
  // uses): an empty match right where the previous match ended is skipped, any other is kept.
  // Calls on_match(start, end) for each.
  template <typename OnMatch>
  void for_each_match(std::string_view subject, OnMatch on_match) const;

  const std::string& pattern() const { return pattern_; }
  bool jit_compiled() const { return jit_; }

 private:
  std::string pattern_;
  pcre2_real_code_8* code_ = nullptr;
  bool jit_ = false;
};

std::size_t next_char_boundary(std::string_view text, std::size_t pos);

template <typename OnMatch>
void RegexPattern::for_each_match(std::string_view subject, OnMatch on_match) const {
  std::size_t from = 0, start = 0, end = 0;
  std::size_t last_match_end = std::string_view::npos;
  while (from <= subject.size() && find(subject, from, start, end)) {
    if (start == end && end == last_match_end) {
      from = next_char_boundary(subject, from);
      continue;
    }
    on_match(start, end);
    from = last_match_end = end;
  }
}

// Escapes `literal` so that it matches itself (HF Split patterns given as {"String": ...}).
std::string escape_regex_literal(std::string_view literal);

}  // namespace nextn::tokenizer
