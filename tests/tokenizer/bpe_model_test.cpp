// The two merge algorithms (linear scan for short pieces, heap for long ones) against each other
// on random merge tables, and hand-checked rank semantics.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "nextn/tokenizer/bpe_model.h"

namespace nextn::tokenizer {
namespace {

std::array<int32_t, 256> identity_byte_ids() {
  std::array<int32_t, 256> ids{};
  for (int byte = 0; byte < 256; ++byte) ids[byte] = byte;
  return ids;
}

TEST(BpeModel, LowestRankFirstThenLeftmost) {
  // rank 0: a a -> 256 ("aa"); rank 1: aa a -> 257 ("aaa")
  BpeModel model(identity_byte_ids(), {{'a', 'a', 256}, {256, 'a', 257}}, {}, false);
  auto encode = [&](const std::string& text) {
    std::vector<int32_t> out;
    model.encode_piece_uncached(text, out);
    return out;
  };
  EXPECT_EQ(encode("aaa"), (std::vector<int32_t>{257}));
  EXPECT_EQ(encode("aaaa"), (std::vector<int32_t>{256, 256}));
  // a a a a a: (a,a)@0 -> [aa a a a]; rank 0 again, leftmost @1 -> [aa aa a]; then (aa,a) -> [aa aaa]
  EXPECT_EQ(encode("aaaaa"), (std::vector<int32_t>{256, 257}));
  EXPECT_EQ(encode("ab"), (std::vector<int32_t>{'a', 'b'}));
}

TEST(BpeModel, IgnoreMergesTakesWholeTokens) {
  std::unordered_map<std::string, int32_t> whole{{"xyz", 300}};
  BpeModel with(identity_byte_ids(), {}, whole, true);
  BpeModel without(identity_byte_ids(), {}, whole, false);
  std::vector<int32_t> a, b;
  with.encode_piece_uncached("xyz", a);
  without.encode_piece_uncached("xyz", b);
  EXPECT_EQ(a, (std::vector<int32_t>{300}));
  EXPECT_EQ(b, (std::vector<int32_t>{'x', 'y', 'z'}));
}

TEST(BpeModel, ScanAndHeapAgreeOnRandomMergeTables) {
  std::mt19937 rng(1234);
  for (int table = 0; table < 20; ++table) {
    // Random merges over the alphabet {a, b, c}, each producing a new id.
    std::vector<int32_t> tokens = {'a', 'b', 'c'};
    std::vector<MergeRule> merges;
    std::map<std::pair<int32_t, int32_t>, bool> used;
    int32_t next_id = 256;
    while (merges.size() < 40) {
      int32_t left = tokens[rng() % tokens.size()], right = tokens[rng() % tokens.size()];
      if (used[{left, right}]) continue;
      used[{left, right}] = true;
      merges.push_back({left, right, next_id});
      tokens.push_back(next_id++);
    }
    BpeModel model(identity_byte_ids(), merges, {}, false);
    for (int trial = 0; trial < 100; ++trial) {
      std::vector<int32_t> symbols(1 + rng() % 120);
      for (int32_t& s : symbols) s = "abc"[rng() % 3];
      std::vector<int32_t> by_scan = symbols, by_heap = symbols;
      model.merge_by_scan(by_scan);
      model.merge_by_heap(by_heap);
      ASSERT_EQ(by_scan, by_heap) << "table " << table << " trial " << trial;
    }
  }
}

TEST(BpeModel, CachedAndUncachedEncodingAgree) {
  BpeModel model(identity_byte_ids(), {{'a', 'b', 256}, {256, 'c', 257}}, {}, false);
  for (int pass = 0; pass < 2; ++pass) {  // second pass answers from the cache
    for (const std::string piece : {"abc", "ab", "cab", "abcabc", "x"}) {
      std::vector<int32_t> cached, uncached;
      model.encode_piece(piece, cached);
      model.encode_piece_uncached(piece, uncached);
      EXPECT_EQ(cached, uncached) << piece;
    }
  }
}

}  // namespace
}  // namespace nextn::tokenizer
