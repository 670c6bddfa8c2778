// tokenizer.json: hand-checked ids on small vocabularies in DeepSeek-V3's file shape, Hugging
// Face's added-token semantics, the round trip of nextn's own files, and a clear error for every
// feature nextn does not implement.
#include <gtest/gtest.h>

#include <filesystem>

#include "nextn/io/atomic_file.h"
#include "nextn/tokenizer/tokenizer.h"
#include "nextn/tokenizer/tokenizer_json.h"
#include "nextn/util/error.h"
#include "tokenizer/fixtures.h"

namespace nextn::tokenizer {
namespace {

using testing::added_token;
using testing::hello_world_merges;
using testing::tiny_tokenizer_json;
using Ids = std::vector<int32_t>;

Tokenizer from_json(const nlohmann::json& j) { return Tokenizer::from_json_text(j.dump(), "fixture.json"); }

void expect_load_error(const nlohmann::json& j, std::initializer_list<const char*> fragments) {
  try {
    from_json(j);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find("fixture.json"), std::string::npos) << message;
    for (const char* fragment : fragments) {
      EXPECT_NE(message.find(fragment), std::string::npos) << "'" << message << "' lacks '" << fragment << "'";
    }
  }
}

TEST(TokenizerJson, HandCheckedIdsWithDeepSeekPreTokenizer) {
  Tokenizer tok = from_json(tiny_tokenizer_json(hello_world_merges()));
  EXPECT_EQ(pre_tokenizer_name(tok.spec().pre_tokenizer), "deepseek-v3");
  EXPECT_EQ(tok.vocab_size(), 263);
  // "hello" -> he, ll, hell, hello; " world" -> Ġw (rank 4 before or, rank 5), or, Ġwor; l; d
  EXPECT_EQ(tok.encode("hello world"), (Ids{259, 262, 'l', 'd'}));
  EXPECT_EQ(tok.encode("hello, world"), (Ids{259, ',', 262, 'l', 'd'}));
  EXPECT_EQ(tok.encode("hel"), (Ids{256, 'l'}));
  EXPECT_EQ(tok.decode({259, 262, 'l', 'd'}), "hello world");
  EXPECT_EQ(tok.token_to_id("\u0120wor"), 262);
  EXPECT_EQ(tok.id_to_token(260), "\u0120w");
}

TEST(TokenizerJson, DigitSplitKeepsMergesInsideRunsOfThree) {
  nlohmann::json j = tiny_tokenizer_json({"1 2", "3 4"});
  Tokenizer deepseek = from_json(j);
  // "123" "456" "789" "0": "3 4" never meet inside a piece.
  EXPECT_EQ(deepseek.encode("1234567890"), (Ids{256, '3', '4', '5', '6', '7', '8', '9', '0'}));
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  Tokenizer gpt2 = from_json(j);  // one piece " ?\p{N}+": both merges apply
  EXPECT_EQ(gpt2.encode("1234567890"), (Ids{256, 257, '5', '6', '7', '8', '9', '0'}));
}

TEST(TokenizerJson, AddedTokensFollowHuggingFaceSemantics) {
  nlohmann::json j = tiny_tokenizer_json(hello_world_merges());
  j["added_tokens"] = {added_token(300, "<|endoftext|>", true, false), added_token(301, "bcd", false, true),
                       added_token(302, "cd", true, false), added_token(303, "xyz", false, true),
                       added_token(304, "<|end", true, false)};
  Tokenizer tok = from_json(j);
  EXPECT_EQ(tok.vocab_size(), 305);
  EXPECT_EQ(tok.encode("hi<|endoftext|>hi"), (Ids{'h', 'i', 300, 'h', 'i'}));
  // Longest match at the leftmost position.
  EXPECT_EQ(tok.encode("<|end|>"), (Ids{304, '|', '>'}));
  // Unnormalized tokens are matched first, over the whole text: "cd" wins over "bcd".
  EXPECT_EQ(tok.encode("abcd"), (Ids{'a', 'b', 302}));
  EXPECT_EQ(tok.encode("axyz"), (Ids{'a', 303}));
  // encode_ordinary never produces added tokens.
  EXPECT_EQ(tok.encode_ordinary("<|end"), (Ids{'<', '|', 'e', 'n', 'd'}));
  EXPECT_EQ(tok.decode({300, 'h'}), "<|endoftext|>h");
  EXPECT_TRUE(tok.is_added_token(300));
  EXPECT_FALSE(tok.is_added_token(259));
  // GPT-2 convention: <|endoftext|> is both BOS and EOS; no PAD falls back to EOS.
  EXPECT_EQ(tok.eos_id(), 300);
  EXPECT_EQ(tok.bos_id(), 300);
  EXPECT_EQ(tok.pad_id(), 300);
  // Ids in the gap between model and added tokens have no token.
  EXPECT_THROW(tok.decode({280}), Error);
  EXPECT_THROW(tok.decode({305}), Error);
}

TEST(TokenizerJson, MergesAsPairsReadTheSameAsStrings) {
  nlohmann::json strings = tiny_tokenizer_json(hello_world_merges());
  nlohmann::json pairs = strings;
  pairs["model"]["merges"] = nlohmann::json::array();
  for (const std::string& merge : hello_world_merges()) {
    std::size_t space = merge.find(' ');
    pairs["model"]["merges"].push_back({merge.substr(0, space), merge.substr(space + 1)});
  }
  Tokenizer a = from_json(strings), b = from_json(pairs);
  EXPECT_EQ(a.hash(), b.hash());
  EXPECT_EQ(a.encode("hello world"), b.encode("hello world"));
}

TEST(TokenizerJson, NextnFilesReadBackIdentically) {
  nlohmann::json j = tiny_tokenizer_json(hello_world_merges());
  j["added_tokens"] = {added_token(300, "<|endoftext|>", true, false), added_token(301, "bcd", false, true)};
  Tokenizer original = from_json(j);
  std::string text = original.to_json_text();
  Tokenizer reread = Tokenizer::from_json_text(text, "written.json");
  EXPECT_EQ(reread.to_json_text(), text);
  EXPECT_EQ(reread.hash(), original.hash());
  EXPECT_EQ(reread.spec().vocab, original.spec().vocab);
  EXPECT_EQ(reread.spec().merges, original.spec().merges);
  EXPECT_EQ(reread.spec().added_tokens, original.spec().added_tokens);
  EXPECT_EQ(reread.spec().pre_tokenizer, original.spec().pre_tokenizer);

  std::string path = (std::filesystem::temp_directory_path() / "nextn_tokenizer_json_test.json").string();
  original.save(path);
  Tokenizer loaded = Tokenizer::load(path);
  EXPECT_EQ(io::read_file(path), text);
  EXPECT_EQ(loaded.encode("hello world<|endoftext|>"), original.encode("hello world<|endoftext|>"));
  std::filesystem::remove(path);
}

TEST(TokenizerJson, HashChangesWithContent) {
  Tokenizer a = from_json(tiny_tokenizer_json(hello_world_merges()));
  std::vector<std::string> reordered = hello_world_merges();
  std::swap(reordered[0], reordered[1]);
  Tokenizer b = from_json(tiny_tokenizer_json(reordered));
  EXPECT_NE(a.hash(), b.hash());
  EXPECT_EQ(a.hash().rfind("sha256:", 0), 0u);
  EXPECT_EQ(a.hash().size(), 7u + 64u);
}

TEST(TokenizerJson, UnsupportedFeaturesAreNamedErrors) {
  const nlohmann::json base = tiny_tokenizer_json(hello_world_merges());
  nlohmann::json j = base;
  j["normalizer"] = {{"type", "BertNormalizer"}};
  expect_load_error(j, {"normalizer", "BertNormalizer"});
  j = base;
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "Precompiled"}}}}};
  expect_load_error(j, {"normalizer.normalizers[1]", "Precompiled"});
  j = base;
  j["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  expect_load_error(j, {"pre_tokenizer", "BertPreTokenizer"});
  j = base;
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways";
  expect_load_error(j, {"pretokenizers[0].behavior", "Sideways"});
  j = base;
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "_"}, {"add_prefix_space", false}};
  expect_load_error(j, {"pre_tokenizer", "prepend_scheme"});
  j = base;
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "ab"}};
  expect_load_error(j, {"pre_tokenizer.replacement", "one character"});
  j = base;
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "(unclosed"}};
  expect_load_error(j, {"(unclosed"});
  j = base;
  j["model"]["type"] = "WordPiece";
  expect_load_error(j, {"model", "WordPiece"});
  j = base;
  j["model"]["dropout"] = 0.1;
  expect_load_error(j, {"model.dropout"});
  j = base;
  j["model"]["unk_token"] = "<nope>";
  expect_load_error(j, {"unk_token", "<nope>"});
  j = base;
  j["truncation"] = {{"max_length", 512}};
  expect_load_error(j, {"truncation"});
  j = base;
  j["version"] = "2.0";
  expect_load_error(j, {"version", "2.0"});
  j = base;
  j["post_processor"] = {{"type", "TemplateProcessing"}};
  expect_load_error(j, {"post_processor", "single"});
  j = base;
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}}},
                         {"pair", nlohmann::json::array()},
                         {"special_tokens", nlohmann::json::object()}};
  expect_load_error(j, {"post_processor", "<s>", "special_tokens"});
  j = base;
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}}},
                         {"pair", nlohmann::json::array()},
                         {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {9999}}, {"tokens", {"<s>"}}}}}}};
  expect_load_error(j, {"post_processor", "9999"});
  j = base;
  j["decoder"] = {{"type", "WordPiece"}};
  expect_load_error(j, {"decoder", "WordPiece"});
  j = base;
  j["decoder"] = {{"type", "Strip"}, {"content", " "}, {"start", -1}, {"stop", 0}};
  expect_load_error(j, {"decoder.start"});
  j = base;
  j["surprise"] = 1;
  expect_load_error(j, {"surprise"});
  j = base;
  j["added_tokens"] = {added_token(300, "<x>", true, false)};
  j["added_tokens"][0]["lstrip"] = "yes";
  expect_load_error(j, {"added_tokens[0].lstrip"});
}

TEST(TokenizerJson, InconsistentContentIsANamedError) {
  const nlohmann::json base = tiny_tokenizer_json(hello_world_merges());
  nlohmann::json j = base;
  j["model"]["merges"].push_back("q zz");
  expect_load_error(j, {"merge 7", "zz", "not in the vocabulary"});
  j = base;
  j["model"]["merges"][0] = "h e x";
  expect_load_error(j, {"model.merges[0]"});
  j = base;
  j["model"]["merges"] = {"h e", {"l", "l"}};
  expect_load_error(j, {"model.merges[1]", "mixes"});
  j = base;
  j["model"]["vocab"]["dup"] = 5;
  expect_load_error(j, {"id 5", "twice"});
  j = base;
  j["model"]["vocab"]["x2"] = "7";
  expect_load_error(j, {"model.vocab['x2']", "integer"});
  j = base;
  j["added_tokens"] = {added_token(259, "<clash>", true, false)};
  expect_load_error(j, {"<clash>", "259"});
  try {
    Tokenizer::from_json_text("{ not json", "fixture.json");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Tokenizer::load("/nonexistent/tokenizer.json"), Error);
}

}  // namespace
}  // namespace nextn::tokenizer
