// Pre-tokenisation: the DeepSeek-V3 and GPT-2 regexes on tricky strings, with the expected
// pieces worked out by hand from the regexes (alternatives are tried in order, quantifiers are
// greedy and backtrack, each Split step sees only the pieces of the step before).
#include <gtest/gtest.h>

#include <random>

#include "nextn/tokenizer/pretokenizer.h"
#include "nextn/tokenizer/regex_pattern.h"
#include "nextn/tokenizer/simple_split.h"
#include "nextn/util/error.h"

namespace nextn::tokenizer {
namespace {

using Pieces = std::vector<std::string>;

Pieces split_with(const PreTokenizer& pre_tokenizer, std::string_view text) {
  std::vector<std::string_view> views;
  pre_tokenizer.split(text, views);
  return Pieces(views.begin(), views.end());
}

Pieces deepseek(std::string_view text) {
  static const PreTokenizer pre_tokenizer(deepseek_v3_pre_tokenizer());
  return split_with(pre_tokenizer, text);
}

TEST(DeepSeekV3PreTokenizer, DigitsComeInRunsOfAtMostThree) {
  EXPECT_EQ(deepseek("1234567"), (Pieces{"123", "456", "7"}));
  EXPECT_EQ(deepseek("x=12345;"), (Pieces{"x", "=", "123", "45", ";"}));
  // Arabic-Indic digits are \p{N} too.
  EXPECT_EQ(deepseek("\u0661\u0662\u0663\u0664"), (Pieces{"\u0661\u0662\u0663", "\u0664"}));
  EXPECT_EQ(deepseek("$x_1"), (Pieces{"$x", "_", "1"}));
}

TEST(DeepSeekV3PreTokenizer, CjkRunsAreSplitBeforeEverythingElse) {
  EXPECT_EQ(deepseek("\u4F60\u597Dworld"), (Pieces{"\u4F60\u597D", "world"}));
  // The space before the CJK run is not attached to it: the CJK step cuts first.
  EXPECT_EQ(deepseek("hello \u4E16\u754C!"), (Pieces{"hello", " ", "\u4E16\u754C", "!"}));
  // Katakana and hiragana are in the class; Hangul is not and goes through the letter rule.
  EXPECT_EQ(deepseek("\u30AB\u30BF\u30AB\u30CA\u3068\u3072\u3089\u304C\u306A"),
            (Pieces{"\u30AB\u30BF\u30AB\u30CA\u3068\u3072\u3089\u304C\u306A"}));
  EXPECT_EQ(deepseek("\uD55C\uAD6D\uC5B4 text"), (Pieces{"\uD55C\uAD6D\uC5B4", " text"}));
}

TEST(DeepSeekV3PreTokenizer, PunctuationRuns) {
  EXPECT_EQ(deepseek("a...b"), (Pieces{"a", "...", "b"}));
  // One ASCII punctuation character takes the ASCII letters after it ("[punct][A-Za-z]+").
  EXPECT_EQ(deepseek("foo.bar()"), (Pieces{"foo", ".bar", "()"}));
  EXPECT_EQ(deepseek("don't"), (Pieces{"don", "'t"}));
  EXPECT_EQ(deepseek("x += 1"), (Pieces{"x", " +=", " ", "1"}));
  // Newlines right after punctuation stay with it.
  EXPECT_EQ(deepseek("})\n\n"), (Pieces{"})\n\n"}));
  // Symbols (So) are punctuation-like: an optional space, then the run.
  EXPECT_EQ(deepseek("hi \U0001F44B\U0001F44B!"), (Pieces{"hi", " \U0001F44B\U0001F44B!"}));
}

TEST(DeepSeekV3PreTokenizer, NewlinesIndentationAndTrailingSpaces) {
  EXPECT_EQ(deepseek("def f():\n    return 1\n"),
            (Pieces{"def", " f", "():\n", "   ", " return", " ", "1", "\n"}));
  EXPECT_EQ(deepseek("a  \n"), (Pieces{"a", "  \n"}));
  EXPECT_EQ(deepseek("a   "), (Pieces{"a", "   "}));
  EXPECT_EQ(deepseek("a   b"), (Pieces{"a", "  ", " b"}));
  EXPECT_EQ(deepseek("\n\n\tx"), (Pieces{"\n\n", "\tx"}));
  EXPECT_EQ(deepseek("\r\n"), (Pieces{"\r\n"}));
}

TEST(DeepSeekV3PreTokenizer, CombiningMarksStayWithTheirLetters) {
  EXPECT_EQ(deepseek("cafe\u0301 ok"), (Pieces{"cafe\u0301", " ok"}));
}

TEST(DeepSeekV3PreTokenizer, InvalidUtf8IsKeptInPiecesOfItsOwn) {
  std::string text = "ab\xFF" "cd\xC3";
  Pieces pieces = deepseek(text);
  EXPECT_EQ(pieces, (Pieces{"ab", "\xFF", "cd", "\xC3"}));
}

TEST(Gpt2PreTokenizer, SplitsAsTheGpt2Regex) {
  PreTokenizer gpt2(gpt2_pre_tokenizer());
  EXPECT_EQ(split_with(gpt2, "Hello world's 12345!!"),
            (Pieces{"Hello", " world", "'s", " 12345", "!!"}));
  EXPECT_EQ(split_with(gpt2, "a  b\n"), (Pieces{"a", " ", " b", "\n"}));
}

// Isolated splitting with PCRE2 alone, for checking the built-in scanner against its regex.
Pieces split_by_regex(const RegexPattern& regex, std::string_view text) {
  Pieces pieces;
  std::size_t gap = 0, from = 0, start = 0, end = 0;
  while (from < text.size() && regex.find(text, from, start, end)) {
    if (end == start) {
      from = start + 1;
      continue;
    }
    if (start > gap) pieces.emplace_back(text.substr(gap, start - gap));
    pieces.emplace_back(text.substr(start, end - start));
    gap = from = end;
  }
  if (gap < text.size()) pieces.emplace_back(text.substr(gap));
  return pieces;
}

Pieces simple(std::string_view text) {
  std::vector<std::string_view> views;
  simple_split(text, views);
  return Pieces(views.begin(), views.end());
}

TEST(SimplePreTokenizer, SplitsCodeByHand) {
  EXPECT_EQ(simple("def f(x):\n    return x_1 + 2\n"),
            (Pieces{"def", " f", "(", "x", "):\n", "   ", " return", " x_", "1", " +", " ", "2", "\n"}));
  EXPECT_EQ(simple("  \t\n\n  x"), (Pieces{"  \t\n\n", " ", " x"}));
  EXPECT_EQ(simple("caf\xC3\xA9!"), (Pieces{"caf\xC3\xA9", "!"}));
}

TEST(SimplePreTokenizer, AgreesWithItsRegexOnRandomUtf8) {
  RegexPattern regex(kSimpleSplitPattern);
  const std::vector<std::string> alphabet = {"a", "Z", "_", "0", "7", " ", " ", "\t", "\n", "\r",
                                             "\x0B", "\x0C", "(", ".", "#", "\x01", "\x7F", "\xC3\xA9",
                                             "\xE4\xB8\x96", "\xF0\x9F\x91\x8B", "\xC2\xA0"};
  std::mt19937 rng(42);
  for (int trial = 0; trial < 3000; ++trial) {
    std::string text;
    int length = int(rng() % 24);
    for (int i = 0; i < length; ++i) text += alphabet[rng() % alphabet.size()];
    ASSERT_EQ(simple(text), split_by_regex(regex, text)) << "text: '" << text << "'";
  }
}

TEST(PreTokenizer, PiecesCoverTheTextExactly) {
  std::mt19937 rng(7);
  for (const char* name : {"deepseek-v3", "gpt2", "simple"}) {
    PreTokenizer pre_tokenizer(pre_tokenizer_by_name(name));
    for (int trial = 0; trial < 300; ++trial) {
      std::string text;
      int length = int(rng() % 64);
      for (int i = 0; i < length; ++i) text += char(rng() % 256);
      std::string joined;
      for (const std::string& piece : split_with(pre_tokenizer, text)) {
        EXPECT_FALSE(piece.empty());
        joined += piece;
      }
      ASSERT_EQ(joined, text) << name;
    }
  }
}

TEST(PreTokenizer, PresetsAreRecognisedByName) {
  EXPECT_EQ(pre_tokenizer_name(pre_tokenizer_by_name("deepseek-v3")), "deepseek-v3");
  EXPECT_EQ(pre_tokenizer_name(pre_tokenizer_by_name("gpt2")), "gpt2");
  EXPECT_EQ(pre_tokenizer_name(pre_tokenizer_by_name("simple")), "simple");
  PreTokenizerSpec custom;
  custom.steps.push_back(split_step("\\d"));
  EXPECT_EQ(pre_tokenizer_name(custom), "custom");
  EXPECT_THROW(pre_tokenizer_by_name("bert"), Error);
}

TEST(PreTokenizer, BadRegexIsAClearError) {
  PreTokenizerSpec spec;
  spec.steps.push_back(split_step("(unclosed"));
  try {
    PreTokenizer pre_tokenizer(spec);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(unclosed"), std::string::npos) << e.what();
  }
}

TEST(PreTokenizer, LiteralSplitPatternsMatchThemselves) {
  PreTokenizerSpec spec;
  spec.steps.push_back(split_step("a.b", true));
  PreTokenizer pre_tokenizer(spec);
  EXPECT_EQ(split_with(pre_tokenizer, "xa.bya-b"), (Pieces{"x", "a.b", "ya-b"}));
}

}  // namespace
}  // namespace nextn::tokenizer
