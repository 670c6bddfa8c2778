// BPE training: a hand-checked corpus, and the incremental trainer against a naive reference
// that recounts every pair before every merge.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "nextn/tokenizer/bpe_trainer.h"
#include "nextn/tokenizer/byte_level.h"
#include "nextn/util/error.h"

namespace nextn::tokenizer {
namespace {

using Merges = std::vector<std::pair<std::string, std::string>>;

BpeTrainerOptions options_with(int32_t vocab_size, int64_t min_frequency = 2) {
  BpeTrainerOptions options;
  options.vocab_size = vocab_size;
  options.min_frequency = min_frequency;
  options.pre_tokenizer = simple_pre_tokenizer();
  return options;
}

TEST(BpeTrainer, LearnsTheHandCheckedMerges) {
  // Pair counts: (a,b) 4, (Ġ,a) 3, (b,c) 1. After a+b: (Ġ,ab) 3, (ab,c) 1. After Ġ+ab: (Ġab,c) 1,
  // below min_frequency 2, so training stops with two merges.
  PieceCounts pieces;
  pieces.add_piece("ab", 1);
  pieces.add_piece(" ab", 2);
  pieces.add_piece(" abc", 1);
  TokenizerSpec spec = train_bpe(pieces, options_with(1000));
  EXPECT_EQ(spec.merges, (Merges{{"a", "b"}, {"\u0120", "ab"}}));
  ASSERT_EQ(spec.added_tokens.size(), 6u);
  EXPECT_EQ(spec.added_tokens[0].content, kBosToken);
  EXPECT_EQ(spec.added_tokens[1].content, kEosToken);
  Tokenizer tok(spec);
  EXPECT_EQ(tok.vocab_size(), 6 + 256 + 2);
  EXPECT_EQ(tok.bos_id(), 0);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.pad_id(), 2);
  EXPECT_EQ(tok.token_to_id(kFimBeginToken), 4);
  EXPECT_EQ(tok.token_to_id("a"), 6 + 'a');  // bytes follow the special tokens in byte order
  EXPECT_EQ(tok.encode(" ab"), (std::vector<int32_t>{263}));
  EXPECT_EQ(tok.encode("abc"), (std::vector<int32_t>{262, 6 + 'c'}));
}

TEST(BpeTrainer, TiesGoToTheSmallerPair) {
  PieceCounts pieces;
  pieces.add_piece("cd", 2);
  pieces.add_piece("ab", 2);
  TokenizerSpec spec = train_bpe(pieces, options_with(1000));
  EXPECT_EQ(spec.merges, (Merges{{"a", "b"}, {"c", "d"}}));
}

TEST(BpeTrainer, StopsAtTheVocabularySize) {
  PieceCounts pieces;
  pieces.add_piece("abcdefgh", 10);
  TokenizerSpec spec = train_bpe(pieces, options_with(6 + 256 + 3));
  EXPECT_EQ(spec.merges.size(), 3u);
  EXPECT_EQ(Tokenizer(spec).vocab_size(), 6 + 256 + 3);
  EXPECT_THROW(train_bpe(pieces, options_with(6 + 255)), Error);
}

// Reference: recount all pairs before each merge; the most frequent pair wins, ties to the
// smaller (left, right) id pair; ids as the trainer assigns them.
Merges naive_merges(const std::map<std::string, int64_t>& pieces, int32_t vocab_size, int64_t min_frequency,
                    int32_t& final_vocab_size) {
  const int32_t specials = 6;
  std::vector<std::string> token_bytes;
  std::map<std::string, int32_t> id_of;
  for (int byte = 0; byte < 256; ++byte) {
    token_bytes.push_back(std::string(1, char(byte)));
    id_of[token_bytes.back()] = specials + byte;
  }
  std::vector<std::pair<std::vector<int32_t>, int64_t>> words;
  for (const auto& [piece, count] : pieces) {
    std::vector<int32_t> symbols;
    for (char c : piece) symbols.push_back(specials + uint8_t(c));
    words.emplace_back(symbols, count);
  }
  Merges merges;
  while (int32_t(token_bytes.size()) + specials < vocab_size) {
    std::map<std::pair<int32_t, int32_t>, int64_t> counts;
    for (const auto& [symbols, count] : words) {
      for (std::size_t i = 0; i + 1 < symbols.size(); ++i) counts[{symbols[i], symbols[i + 1]}] += count;
    }
    std::pair<int32_t, int32_t> best{-1, -1};
    int64_t best_count = 0;
    for (const auto& [pair, count] : counts) {  // ascending pair order: '>' keeps the smallest on ties
      if (count > best_count) {
        best = pair;
        best_count = count;
      }
    }
    if (best_count < min_frequency || best_count == 0) break;
    std::string merged = token_bytes[best.first - specials] + token_bytes[best.second - specials];
    int32_t merged_id;
    if (id_of.count(merged)) {
      merged_id = id_of[merged];
    } else {
      merged_id = specials + int32_t(token_bytes.size());
      token_bytes.push_back(merged);
      id_of[merged] = merged_id;
    }
    merges.emplace_back(bytes_to_byte_level(token_bytes[best.first - specials]),
                        bytes_to_byte_level(token_bytes[best.second - specials]));
    for (auto& [symbols, count] : words) {
      std::vector<int32_t> rewritten;
      for (std::size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && symbols[i] == best.first && symbols[i + 1] == best.second) {
          rewritten.push_back(merged_id);
          ++i;
        } else {
          rewritten.push_back(symbols[i]);
        }
      }
      symbols = rewritten;
    }
  }
  final_vocab_size = int32_t(token_bytes.size()) + specials;
  return merges;
}

TEST(BpeTrainer, MatchesANaiveFullRecountTrainer) {
  std::mt19937 rng(99);
  for (int corpus = 0; corpus < 40; ++corpus) {
    // Half the corpora over {a, b} with long pieces: many overlapping runs.
    const std::string alphabet = corpus % 2 ? "abc " : "ab";
    std::map<std::string, int64_t> pieces;
    PieceCounts counts;
    for (int i = 0; i < 60; ++i) {
      std::string piece;
      int length = 1 + int(rng() % (corpus % 2 ? 12 : 24));
      for (int k = 0; k < length; ++k) piece += alphabet[rng() % alphabet.size()];
      int64_t count = 1 + int64_t(rng() % 5);
      pieces[piece] += count;
      counts.add_piece(piece, count);
    }
    const int32_t vocab_size = 6 + 256 + 60;
    int32_t naive_vocab_size = 0;
    Merges expected = naive_merges(pieces, vocab_size, 2, naive_vocab_size);
    TokenizerSpec spec = train_bpe(counts, options_with(vocab_size));
    ASSERT_EQ(spec.merges, expected) << "corpus " << corpus;
    EXPECT_EQ(Tokenizer(spec).vocab_size(), naive_vocab_size);
  }
}

TEST(BpeTrainer, IsDeterministic) {
  PreTokenizer pre_tokenizer(deepseek_v3_pre_tokenizer());
  std::string text;
  for (int i = 0; i < 200; ++i) text += "def f" + std::to_string(i % 17) + "(self, x):\n    return x * " + std::to_string(i) + "\n";
  PieceCounts a, b;
  a.add_text(pre_tokenizer, text);
  b.add_text(pre_tokenizer, text);
  BpeTrainerOptions options;
  options.vocab_size = 6 + 256 + 50;
  Tokenizer first(train_bpe(a, options)), second(train_bpe(b, options));
  EXPECT_EQ(first.hash(), second.hash());
  EXPECT_EQ(first.decode(first.encode(text)), text);
}

}  // namespace
}  // namespace nextn::tokenizer
