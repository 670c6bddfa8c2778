// The whole tokenizer: round trips on random bytes and real files, special tokens, streaming
// decode, hashing.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "nextn/io/atomic_file.h"
#include "nextn/tokenizer/bpe_trainer.h"
#include "nextn/tokenizer/tokenizer.h"
#include "nextn/tokenizer/utf8.h"
#include "nextn/util/error.h"

namespace nextn::tokenizer {
namespace {

namespace fs = std::filesystem;

// Real files: this repository's own sources (always there), and some of the Python standard
// library when the machine has it.
std::vector<std::string> real_files() {
  std::vector<std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(fs::path(NEXTN_SOURCE_DIR) / "src")) {
    const std::string extension = entry.path().extension().string();
    // C++ sources only: the dashboard's page (page/*.js, *.css) is another kind of text.
    if (entry.is_regular_file() && (extension == ".cpp" || extension == ".h")) files.push_back(entry.path().string());
  }
  for (const char* name : {"/usr/lib/python3.11/argparse.py", "/usr/lib/python3.11/textwrap.py"}) {
    if (fs::exists(name)) files.push_back(name);
  }
  std::sort(files.begin(), files.end());
  return files;
}

const Tokenizer& trained_tokenizer(const std::string& pre_tokenizer_name) {
  static std::map<std::string, Tokenizer> cache;
  auto it = cache.find(pre_tokenizer_name);
  if (it != cache.end()) return it->second;
  BpeTrainerOptions options;
  options.vocab_size = 1024;
  options.pre_tokenizer = pre_tokenizer_by_name(pre_tokenizer_name);
  PreTokenizer pre_tokenizer(options.pre_tokenizer);
  PieceCounts counts;
  for (const std::string& file : real_files()) counts.add_text(pre_tokenizer, io::read_file(file));
  return cache.emplace(pre_tokenizer_name, Tokenizer(train_bpe(counts, options))).first->second;
}

std::string random_bytes(std::mt19937& rng, int max_length) {
  // A mix of arbitrary bytes, ASCII code, whitespace runs and UTF-8 characters.
  static const std::vector<std::string> chunks = {"def ", "  ", "\n    ", "x", "123456", "\xE4\xB8\x96",
                                                  "\xF0\x9F\x91\x8B", "\xC3\xA9", "()", " = ", "'s", "\t"};
  std::string text;
  int length = int(rng() % max_length);
  while (int(text.size()) < length) {
    if (rng() % 3 == 0) text += char(rng() % 256);
    else text += chunks[rng() % chunks.size()];
  }
  return text;
}

TEST(Tokenizer, RoundTripsRandomBytes) {
  std::mt19937 rng(2024);
  for (const char* name : {"deepseek-v3", "gpt2", "simple"}) {
    const Tokenizer& tok = trained_tokenizer(name);
    for (int trial = 0; trial < 300; ++trial) {
      std::string text = random_bytes(rng, 200);
      ASSERT_EQ(tok.decode(tok.encode(text)), text) << name;
      ASSERT_EQ(tok.decode(tok.encode_ordinary(text)), text) << name;
    }
    std::string all_bytes;
    for (int byte = 0; byte < 256; ++byte) all_bytes += char(byte);
    EXPECT_EQ(tok.decode(tok.encode(all_bytes)), all_bytes);
    std::string long_run(5000, 'a');  // one huge piece: the heap merge path
    EXPECT_EQ(tok.decode(tok.encode(long_run)), long_run);
  }
}

TEST(Tokenizer, RoundTripsRealFilesAndCompressesThem) {
  const Tokenizer& tok = trained_tokenizer("deepseek-v3");
  std::size_t bytes = 0, tokens = 0;
  for (const std::string& file : real_files()) {
    std::string text = io::read_file(file);
    std::vector<int32_t> ids = tok.encode(text);
    ASSERT_EQ(tok.decode(ids), text) << file;
    bytes += text.size();
    tokens += ids.size();
  }
  // A 1024-token vocabulary trained on these files must merge a lot of them. The files are
  // nextn's own sources, which grow, and a vocabulary of fixed size compresses a larger corpus less:
  // 2.50 bytes per token at 1.19 MB (2026-12-04), 1 without any merge.
  EXPECT_GT(double(bytes) / double(tokens), 2.3) << bytes << " bytes, " << tokens << " tokens";
}

TEST(Tokenizer, SpecialTokensAreSingleIdsOnlyInEncode) {
  const Tokenizer& tok = trained_tokenizer("deepseek-v3");
  EXPECT_EQ(tok.bos_id(), 0);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.pad_id(), 2);
  EXPECT_EQ(tok.token_to_id(kFimHoleToken), 3);
  EXPECT_EQ(tok.token_to_id(kFimBeginToken), 4);
  EXPECT_EQ(tok.token_to_id(kFimEndToken), 5);
  std::string text = std::string("x") + kEosToken + "y";
  std::vector<int32_t> ids = tok.encode(text);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[1], 1);
  std::vector<int32_t> ordinary = tok.encode_ordinary(text);
  EXPECT_EQ(std::count(ordinary.begin(), ordinary.end(), 1), 0);
  EXPECT_EQ(tok.decode(ordinary), text);
  EXPECT_EQ(tok.decode(ids), text);
}

TEST(Tokenizer, SavedAndLoadedTokenizerIsTheSame) {
  const Tokenizer& tok = trained_tokenizer("deepseek-v3");
  std::string path = (fs::temp_directory_path() / "nextn_tokenizer_test.json").string();
  tok.save(path);
  Tokenizer loaded = Tokenizer::load(path);
  EXPECT_EQ(loaded.hash(), tok.hash());
  EXPECT_EQ(loaded.to_json_text(), io::read_file(path));
  std::string text = io::read_file(real_files().front());
  EXPECT_EQ(loaded.encode(text), tok.encode(text));
  fs::remove(path);
  EXPECT_NE(trained_tokenizer("gpt2").hash(), tok.hash());
}

TEST(StreamDecoder, EmitsCompleteCharactersAndAddsUpToDecode) {
  const Tokenizer& tok = trained_tokenizer("deepseek-v3");
  for (std::string text : {std::string("h\xC3\xA9llo \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x91\x8B\xF0\x9F\x91\x8B!"),
                           std::string("bad \xFF\xFE bytes \xE4\xB8"), io::read_file(real_files().front())}) {
    std::vector<int32_t> ids = tok.encode(text);
    StreamDecoder decoder(tok);
    std::string joined;
    bool valid_text = is_valid_utf8(text);
    for (int32_t id : ids) {
      std::string piece = decoder.push(id);
      if (valid_text) {
        EXPECT_TRUE(is_valid_utf8(piece));
      }
      joined += piece;
    }
    joined += decoder.flush();
    EXPECT_EQ(joined, text);
  }
  // A character split over tokens comes out only when complete.
  StreamDecoder decoder(tok);
  std::vector<int32_t> bytes = tok.encode_ordinary("\xE4");  // the lone first byte of a CJK character
  ASSERT_EQ(bytes.size(), 1u);
  EXPECT_EQ(decoder.push(bytes[0]), "");
  EXPECT_EQ(decoder.flush(), "\xE4");
}

TEST(Tokenizer, MissingSpecialTokensAreNamedErrors) {
  PieceCounts counts;
  counts.add_piece("ab", 3);
  BpeTrainerOptions options;
  options.vocab_size = 300;
  options.special_tokens = {"<only>"};
  Tokenizer tok(train_bpe(counts, options));
  try {
    tok.eos_id();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no EOS"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(tok.find_bos_id().has_value());
}

}  // namespace
}  // namespace nextn::tokenizer
