#define PCRE2_CODE_UNIT_WIDTH 8
#include "nextn/tokenizer/regex_pattern.h"

#include <pcre2.h>

#include <cctype>

#include "nextn/tokenizer/utf8.h"
#include "nextn/util/error.h"

namespace nextn::tokenizer {
namespace {

std::string pcre2_message(int error_code) {
  PCRE2_UCHAR buffer[256];
  int rc = pcre2_get_error_message(error_code, buffer, sizeof(buffer));
  if (rc < 0) return cat("PCRE2 error ", error_code);
  return std::string(reinterpret_cast<const char*>(buffer));
}

// Per-thread match scratch: match data for the overall match only, and a JIT stack larger than
// PCRE2's 32 KiB default so that long runs (indentation, comment rules) never hit its limit.
struct MatchScratch {
  pcre2_match_data* match_data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;

  MatchScratch() {
    match_data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    jit_stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
    NEXTN_CHECK(match_data && context && jit_stack, "out of memory creating PCRE2 match data");
    pcre2_jit_stack_assign(context, nullptr, jit_stack);
  }
  ~MatchScratch() {
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(match_data);
  }
};

MatchScratch& scratch() {
  thread_local MatchScratch instance;
  return instance;
}

}  // namespace

RegexPattern::RegexPattern(std::string pattern) : pattern_(std::move(pattern)) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  // MULTILINE: ^ and $ match at line boundaries, as in Oniguruma's Ruby syntax (Hugging Face's
  // regex engine).
  uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_MULTILINE;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern_.data()), pattern_.size(), options,
                        &error_code, &error_offset, nullptr);
  if (!code_) {
    fail("pre-tokenizer regex does not compile at offset ", error_offset, ": ",
         pcre2_message(error_code), " (pattern: ", pattern_, ")");
  }
  // JIT is an optimisation: a library built without it still matches, only slower.
  jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
}

RegexPattern::~RegexPattern() { pcre2_code_free(code_); }

bool RegexPattern::find(std::string_view subject, std::size_t from, std::size_t& match_start,
                        std::size_t& match_end) const {
  MatchScratch& s = scratch();
  auto text = reinterpret_cast<PCRE2_SPTR>(subject.data());
  int rc = jit_ ? pcre2_jit_match(code_, text, subject.size(), from, 0, s.match_data, s.context)
                : pcre2_match(code_, text, subject.size(), from, 0, s.match_data, s.context);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
    // A pathological subject: the interpreter keeps its backtracking state on the heap instead.
    rc = pcre2_match(code_, text, subject.size(), from, PCRE2_NO_JIT, s.match_data, s.context);
  }
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  NEXTN_CHECK(rc >= 0, "pre-tokenizer regex failed: ", pcre2_message(rc), " (pattern: ", pattern_, ")");
  PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(s.match_data);
  match_start = ovector[0];
  match_end = ovector[1];
  return true;
}

std::size_t next_char_boundary(std::string_view text, std::size_t pos) {
  if (pos >= text.size()) return text.size() + 1;
  std::size_t length = utf8_sequence_length(text, pos);
  return pos + (length == 0 ? 1 : length);
}

std::string escape_regex_literal(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    uint8_t byte = uint8_t(c);
    // A backslash before an ASCII non-alphanumeric character always means the character itself;
    // non-ASCII bytes have no special meaning and stay as they are.
    if (byte < 0x80 && !std::isalnum(byte)) out += '\\';
    out += c;
  }
  return out;
}

}  // namespace nextn::tokenizer
