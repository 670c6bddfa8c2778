#include "nextn/tokenizer/pretokenizer.h"

#include "nextn/tokenizer/regex_pattern.h"
#include "nextn/tokenizer/simple_split.h"
#include "nextn/tokenizer/utf8.h"
#include "nextn/util/error.h"

namespace nextn::tokenizer {

const char* const kGpt2SplitPattern =
    R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)re";

PreTokenizerSpec deepseek_v3_pre_tokenizer() {
  // The three Split steps of deepseek-ai/DeepSeek-V3's tokenizer.json, as recorded by llama.cpp
  // (src/llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_DEEPSEEK3_LLM) and by tokenizer.json fixtures
  // that copy the file's pre_tokenizer block. The CJK class is U+4E00-U+9FA5 (CJK ideographs),
  // U+3040-U+309F (hiragana) and U+30A0-U+30FF (katakana).
  PreTokenizerSpec spec;
  spec.splits.push_back({R"re(\p{N}{1,3})re", false});
  spec.splits.push_back({"[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+", false});
  spec.splits.push_back(
      {R"re([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re",
       false});
  spec.byte_level_use_regex = false;
  return spec;
}

PreTokenizerSpec gpt2_pre_tokenizer() {
  PreTokenizerSpec spec;
  spec.byte_level_use_regex = true;
  return spec;
}

PreTokenizerSpec simple_pre_tokenizer() {
  PreTokenizerSpec spec;
  spec.splits.push_back({kSimpleSplitPattern, false});
  return spec;
}

PreTokenizerSpec pre_tokenizer_by_name(const std::string& name) {
  if (name == "deepseek-v3") return deepseek_v3_pre_tokenizer();
  if (name == "gpt2") return gpt2_pre_tokenizer();
  if (name == "simple") return simple_pre_tokenizer();
  fail("unknown pre-tokenizer '", name, "' (choose deepseek-v3, gpt2 or simple)");
}

std::string pre_tokenizer_name(const PreTokenizerSpec& spec) {
  if (spec == deepseek_v3_pre_tokenizer()) return "deepseek-v3";
  if (spec == gpt2_pre_tokenizer()) return "gpt2";
  if (spec == simple_pre_tokenizer()) return "simple";
  return "custom";
}

PreTokenizer::PreTokenizer(PreTokenizerSpec spec) : spec_(std::move(spec)) {
  std::vector<std::string> patterns;
  for (const SplitPattern& split : spec_.splits) {
    patterns.push_back(split.is_literal ? escape_regex_literal(split.pattern) : split.pattern);
  }
  if (spec_.byte_level_use_regex) patterns.push_back(kGpt2SplitPattern);
  for (const std::string& pattern : patterns) {
    Step step;
    // The built-in scanner is the same split as its regex, several times faster.
    if (pattern != kSimpleSplitPattern) step.regex = std::make_shared<RegexPattern>(pattern);
    steps_.push_back(std::move(step));
  }
}

bool PreTokenizer::all_regexes_jit_compiled() const {
  for (const Step& step : steps_) {
    if (step.regex && !step.regex->jit_compiled()) return false;
  }
  return true;
}

void PreTokenizer::split_step(const Step& step, std::string_view piece,
                              std::vector<std::string_view>& out) const {
  if (!step.regex) {
    simple_split(piece, out);
    return;
  }
  std::size_t gap_start = 0;
  std::size_t search_from = 0;
  std::size_t match_start = 0;
  std::size_t match_end = 0;
  while (search_from < piece.size() && step.regex->find(piece, search_from, match_start, match_end)) {
    if (match_end == match_start) {
      // An empty match makes no piece; search again one character further on.
      std::size_t length = utf8_sequence_length(piece, match_start);
      search_from = match_start + (length == 0 ? 1 : length);
      continue;
    }
    if (match_start > gap_start) out.push_back(piece.substr(gap_start, match_start - gap_start));
    out.push_back(piece.substr(match_start, match_end - match_start));
    gap_start = search_from = match_end;
  }
  if (gap_start < piece.size()) out.push_back(piece.substr(gap_start));
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  if (text.empty()) return;
  if (steps_.empty()) {
    pieces.push_back(text);
    return;
  }
  std::vector<std::string_view> current{text};
  std::vector<std::string_view> next;
  for (std::size_t s = 0; s + 1 < steps_.size(); ++s) {
    next.clear();
    for (std::string_view piece : current) split_step(steps_[s], piece, next);
    current.swap(next);
  }
  for (std::string_view piece : current) split_step(steps_.back(), piece, pieces);
}

}  // namespace nextn::tokenizer
