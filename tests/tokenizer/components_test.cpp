// The tokenizer.json components one by one, against values Hugging Face tokenizers 0.22 gives for
// the same inputs (each checked with its npm build; the end-to-end comparison is
// tests/tokenizer/conformance.test.mjs).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "nextn/tokenizer/decoder.h"
#include "nextn/tokenizer/normalizer.h"
#include "nextn/tokenizer/pretokenizer.h"
#include "nextn/tokenizer/tokenizer.h"
#include "nextn/tokenizer/tokenizer_config.h"
#include "nextn/tokenizer/unicode.h"
#include "nextn/util/error.h"

namespace nextn::tokenizer {
namespace {

using Pieces = std::vector<std::string>;
using Ids = std::vector<int32_t>;

std::string normalize_with(NormalizerStep step, std::string_view text) {
  NormalizerSpec spec;
  spec.present = true;
  spec.steps.push_back(std::move(step));
  return Normalizer(spec).normalize(text);
}

NormalizerStep normalizer(NormalizerStep::Kind kind) {
  NormalizerStep step;
  step.kind = kind;
  return step;
}

TEST(Normalizers, MatchHuggingFace) {
  using Kind = NormalizerStep::Kind;
  // Per character, no final sigma; İ becomes two characters.
  EXPECT_EQ(normalize_with(normalizer(Kind::kLowercase), "ΟΔΟΣ İI ẞ ǅ"), "οδοσ i\u0307i ß ǆ");
  EXPECT_EQ(normalize_with(normalizer(Kind::kNfkc), "ｶﾞ|ﬁ|①"), "ガ|fi|1");
  EXPECT_EQ(normalize_with(normalizer(Kind::kNfd), "é"), "e\u0301");
  EXPECT_EQ(normalize_with(normalizer(Kind::kNfc), "e\u0301"), "é");
  NormalizerStep strip = normalizer(Kind::kStrip);
  strip.strip_left = strip.strip_right = true;
  EXPECT_EQ(normalize_with(strip, "\u00a0\u3000 a b\u2003\n"), "a b");
  strip.strip_left = false;
  EXPECT_EQ(normalize_with(strip, " a "), " a");
  NormalizerStep replace = normalizer(Kind::kReplace);
  replace.pattern = "(a)(b)";
  replace.pattern_is_regex = true;
  replace.content = "$2$1";  // inserted as it is
  EXPECT_EQ(normalize_with(replace, "xab"), "x$2$1");
  replace.pattern = "x*";
  replace.content = "-";  // empty matches are replaced too, as Oniguruma finds them
  EXPECT_EQ(normalize_with(replace, "abxxc"), "-a-b-c-");
  NormalizerStep prepend = normalizer(Kind::kPrepend);
  prepend.content = "\u2581";
  EXPECT_EQ(normalize_with(prepend, ""), "");
  EXPECT_EQ(normalize_with(prepend, "a"), "\u2581a");
  // Invalid bytes pass through every form unchanged.
  EXPECT_EQ(normalize_with(normalizer(Kind::kNfkc), "\xff\xef\xbd\xb6"), "\xff\xe3\x82\xab");
}

Pieces split_with(const PreTokenizerSpec& spec, std::string_view text, bool at_start = true) {
  PreTokenizer pre_tokenizer(spec);
  PieceArena arena;
  std::vector<std::string_view> views;
  pre_tokenizer.split(text, views, &arena, at_start);
  return Pieces(views.begin(), views.end());
}

PreTokenizerSpec one_step(PreTokenizerStep step) {
  PreTokenizerSpec spec;
  spec.steps.push_back(std::move(step));
  return spec;
}

TEST(PreTokenizers, SplitBehavioursMatchHuggingFace) {
  auto dash = [](SplitBehavior behavior) {
    return split_with(one_step(split_step("-", /*is_literal=*/true, behavior)), "the-final--countdown");
  };
  EXPECT_EQ(dash(SplitBehavior::kRemoved), (Pieces{"the", "final", "countdown"}));
  EXPECT_EQ(dash(SplitBehavior::kIsolated), (Pieces{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(dash(SplitBehavior::kMergedWithPrevious), (Pieces{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(dash(SplitBehavior::kMergedWithNext), (Pieces{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(dash(SplitBehavior::kContiguous), (Pieces{"the", "-", "final", "--", "countdown"}));

  auto empty_matches = [](SplitBehavior behavior) { return split_with(one_step(split_step("x*", false, behavior)), "abxxc"); };
  EXPECT_EQ(empty_matches(SplitBehavior::kRemoved), (Pieces{"a", "b", "c"}));
  EXPECT_EQ(empty_matches(SplitBehavior::kIsolated), (Pieces{"a", "b", "xx", "c"}));
  EXPECT_EQ(empty_matches(SplitBehavior::kMergedWithPrevious), (Pieces{"a", "bxx", "c"}));
  EXPECT_EQ(empty_matches(SplitBehavior::kMergedWithNext), (Pieces{"a", "b", "xxc"}));

  auto inverted = [](SplitBehavior behavior) {
    PreTokenizerStep step = split_step("[a-z]+", false, behavior);
    step.invert = true;
    return split_with(one_step(step), "ab-.cd  e");
  };
  EXPECT_EQ(inverted(SplitBehavior::kRemoved), (Pieces{"ab", "cd", "e"}));
  EXPECT_EQ(inverted(SplitBehavior::kMergedWithPrevious), (Pieces{"ab-.", "cd  ", "e"}));
  EXPECT_EQ(inverted(SplitBehavior::kMergedWithNext), (Pieces{"ab", "-.cd", "  e"}));
  // ^ and $ are line anchors, as in Oniguruma.
  EXPECT_EQ(split_with(one_step(split_step(".", false, SplitBehavior::kRemoved)), "a\nb"), (Pieces{"\n"}));
}

TEST(PreTokenizers, CharacterClassStepsMatchHuggingFace) {
  PreTokenizerStep digits;
  digits.kind = PreTokenizerStep::Kind::kDigits;
  EXPECT_EQ(split_with(one_step(digits), "a12b٣٤x½Ⅻ3"), (Pieces{"a", "12", "b", "٣٤", "x", "½Ⅻ3"}));
  digits.individual_digits = true;
  EXPECT_EQ(split_with(one_step(digits), "a12"), (Pieces{"a", "1", "2"}));

  PreTokenizerStep whitespace;
  whitespace.kind = PreTokenizerStep::Kind::kWhitespace;
  EXPECT_EQ(split_with(one_step(whitespace), "Hey, you!! é_x\u00a0y"), (Pieces{"Hey", ",", "you", "!!", "é_x", "y"}));
  PreTokenizerStep whitespace_split;
  whitespace_split.kind = PreTokenizerStep::Kind::kWhitespaceSplit;
  EXPECT_EQ(split_with(one_step(whitespace_split), "a\u001cb\u0085c\u200bd"), (Pieces{"a\u001cb", "c\u200bd"}));

  PreTokenizerStep punctuation;
  punctuation.kind = PreTokenizerStep::Kind::kPunctuation;
  EXPECT_EQ(split_with(one_step(punctuation), "a,,b€$"), (Pieces{"a", ",", ",", "b€", "$"}));
  punctuation.behavior = SplitBehavior::kContiguous;
  EXPECT_EQ(split_with(one_step(punctuation), "a,,b"), (Pieces{"a", ",,", "b"}));
}

TEST(PreTokenizers, MetaspaceAndByteLevelMatchHuggingFace) {
  PreTokenizerStep metaspace;
  metaspace.kind = PreTokenizerStep::Kind::kMetaspace;
  EXPECT_EQ(split_with(one_step(metaspace), "  a\tb"), (Pieces{"\u2581", "\u2581a\tb"}));
  EXPECT_EQ(split_with(one_step(metaspace), "a  b"), (Pieces{"\u2581a", "\u2581", "\u2581b"}));
  metaspace.prepend_scheme = PrependScheme::kFirst;
  metaspace.split = false;
  EXPECT_EQ(split_with(one_step(metaspace), "c d", /*at_start=*/false), (Pieces{"c\u2581d"}));
  EXPECT_EQ(split_with(one_step(metaspace), "c d", /*at_start=*/true), (Pieces{"\u2581c\u2581d"}));

  // The prefix space goes in front of a piece that does not start with U+0020 (a tab does not).
  PreTokenizerStep byte_level = byte_level_step(true);
  byte_level.add_prefix_space = true;
  EXPECT_EQ(split_with(one_step(byte_level), "\tHi"), (Pieces{" ", "\t", "Hi"}));
  EXPECT_EQ(split_with(one_step(byte_level), "Hello  world's 123 ok\n\n x"),
            (Pieces{" Hello", " ", " world", "'s", " 123", " ok", "\n\n", " x"}));
  // Not last: the pieces are mapped to the byte-level alphabet at once.
  PreTokenizerSpec mapped;
  mapped.steps = {byte_level_step(false), split_step("\u0120", true, SplitBehavior::kMergedWithNext)};
  EXPECT_EQ(split_with(mapped, "a b"), (Pieces{"a", "\u0120b"}));
  EXPECT_FALSE(PreTokenizer(mapped).defers_byte_level());
}

// A character-mode BPE tokenizer: vocabulary and merges as given, no pre-tokenizer, no decoder.
Tokenizer char_bpe(nlohmann::json vocab, std::vector<std::string> merges, nlohmann::json model_options = {}) {
  nlohmann::json j = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", nlohmann::json::array()},
                      {"normalizer", nullptr}, {"pre_tokenizer", nullptr}, {"post_processor", nullptr}, {"decoder", nullptr}};
  j["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"vocab", vocab}, {"merges", merges}};
  for (auto it = model_options.begin(); it != model_options.end(); ++it) j["model"][it.key()] = it.value();
  return Tokenizer::from_json_text(j.dump(), "char_bpe.json");
}

TEST(BpeModel, CharacterModeMatchesHuggingFace) {
  // A character outside the vocabulary, with no unknown token, is dropped: its neighbours merge.
  Tokenizer plain = char_bpe({{"a", 0}, {"b", 1}, {"ab", 2}, {" ", 3}, {"c", 4}}, {"a b"});
  EXPECT_EQ(plain.encode("aXb c"), (Ids{2, 3, 4}));
  Tokenizer repeat = char_bpe({{"a", 0}, {"aa", 1}}, {"a a"});
  EXPECT_EQ(repeat.encode("aaaaa"), (Ids{1, 1, 0}));  // leftmost first on equal ranks
  nlohmann::json vocab = {{"<unk>", 0}, {"a", 1}, {"b", 2}, {"<0xC3>", 3}, {"<0xA9>", 4}};
  EXPECT_EQ(char_bpe(vocab, {}, {{"unk_token", "<unk>"}, {"fuse_unk", true}}).encode("aXYb"), (Ids{1, 0, 2}));
  EXPECT_EQ(char_bpe(vocab, {}, {{"unk_token", "<unk>"}}).encode("aXYb"), (Ids{1, 0, 0, 2}));
  // Byte fallback; a pending unknown token comes after the fallback bytes (Hugging Face's order).
  EXPECT_EQ(char_bpe(vocab, {}, {{"unk_token", "<unk>"}, {"byte_fallback", true}}).encode("aXéb"), (Ids{1, 3, 4, 0, 2}));
  // Prefix and suffix: the merged token is left + right without right's prefix.
  Tokenizer affixes = char_bpe({{"a", 0}, {"##b", 1}, {"##c</w>", 2}, {"ab", 3}, {"b", 4}}, {"a ##b"},
                               {{"continuing_subword_prefix", "##"}, {"end_of_word_suffix", "</w>"}});
  EXPECT_EQ(affixes.encode("abc"), (Ids{3, 2}));
  // No decoder: tokens joined with spaces.
  EXPECT_EQ(plain.decode({2, 4}), "ab c");
}

DecoderStep decoder_step(DecoderStep::Kind kind) {
  DecoderStep step;
  step.kind = kind;
  return step;
}

TEST(Decoders, MatchHuggingFace) {
  DecoderSpec fallback;
  fallback.present = true;
  fallback.steps.push_back(decoder_step(DecoderStep::Kind::kByteFallback));
  EXPECT_EQ(Decoder(fallback).decode({"<0x41>", "<0xFF>", "<0x41>"}), "\ufffd\ufffd\ufffd");
  EXPECT_EQ(Decoder(fallback).decode({"<0xC3>", "<0xA9>", "x"}), "éx");
  DecoderSpec metaspace;
  metaspace.present = true;
  metaspace.steps.push_back(decoder_step(DecoderStep::Kind::kMetaspace));
  EXPECT_EQ(Decoder(metaspace).decode({"\u2581\u2581world", "\u2581Hello"}), "world Hello");
  DecoderSpec strip;
  strip.present = true;
  DecoderStep step = decoder_step(DecoderStep::Kind::kStrip);
  step.content = " ";
  step.start = 1;
  step.stop = 2;
  strip.steps.push_back(step);
  EXPECT_EQ(Decoder(strip).decode({"  a   ", "   "}), " a ");
  EXPECT_EQ(to_valid_utf8_lossy("a\xE2\x82z\xFF"), "a\ufffdz\ufffd");  // one per maximal subpart
}

TEST(AddedTokens, FlagsMatchHuggingFace) {
  nlohmann::json vocab = nlohmann::json::object();
  for (char c : std::string("abcdxy1_. <>m")) vocab[std::string(1, c)] = int(vocab.size());
  vocab["\xc3\xa9"] = int(vocab.size());
  auto with_added = [&](nlohmann::json added) {
    nlohmann::json j = {{"version", "1.0"}, {"added_tokens", added}, {"normalizer", nullptr}, {"pre_tokenizer", nullptr},
                        {"post_processor", nullptr}, {"decoder", nullptr}};
    j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}};
    return Tokenizer::from_json_text(j.dump(), "added.json");
  };
  auto token = [](int id, std::string content, nlohmann::json flags) {
    nlohmann::json t = {{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                        {"normalized", false}, {"special", true}};
    for (auto it = flags.begin(); it != flags.end(); ++it) t[it.key()] = it.value();
    return t;
  };
  Tokenizer single = with_added({token(100, "ab", {{"single_word", true}})});
  for (const char* text : {"ab1", "ab_x", "xab", "abab"}) EXPECT_EQ(single.encode(text).front() == 100 || single.encode(text).back() == 100, false) << text;
  EXPECT_EQ(single.encode("ab.").front(), 100);
  EXPECT_EQ(single.encode("\xc3\xa9 ab").back(), 100);
  // Leftmost-longest, and a discarded match is not retried with a shorter token.
  Tokenizer no_retry = with_added({token(100, "abc", {{"single_word", true}}), token(101, "ab", {})});
  EXPECT_EQ(no_retry.encode("abcd"), (Ids{int32_t(vocab["a"]), int32_t(vocab["b"]), int32_t(vocab["c"]), int32_t(vocab["d"])}));
  // lstrip/rstrip take the white space beside the token into it.
  Tokenizer strip = with_added({token(100, "<m>", {{"lstrip", true}, {"rstrip", true}})});
  EXPECT_EQ(strip.encode("a  <m>  b"), (Ids{int32_t(vocab["a"]), 100, int32_t(vocab["b"])}));
}

TEST(TokenizerConfig, ReadsTokensTemplatesAndFlags) {
  TokenizerConfig config = parse_tokenizer_config(
      R"({"bos_token": {"__type": "AddedToken", "content": "<s>"}, "eos_token": "</s>", "add_bos_token": true,
          "chat_template": [{"name": "default", "template": "{{ x }}"}, {"name": "tool_use", "template": "t"}],
          "model_max_length": 4096})",
      "tokenizer_config.json");
  EXPECT_EQ(config.bos_token, "<s>");
  EXPECT_EQ(config.eos_token, "</s>");
  EXPECT_EQ(config.add_bos_token, true);
  EXPECT_EQ(config.chat_template, "{{ x }}");
  EXPECT_EQ(config.named_chat_templates.size(), 2u);
  EXPECT_THROW(parse_tokenizer_config(R"({"add_bos_token": "yes"})", "c.json"), Error);
  EXPECT_THROW(parse_tokenizer_config(R"({"chat_template": 3})", "c.json"), Error);
}

}  // namespace
}  // namespace nextn::tokenizer
