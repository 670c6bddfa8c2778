#include <gtest/gtest.h>

#include <set>

#include "nextn/tokenizer/byte_level.h"
#include "nextn/tokenizer/utf8.h"

namespace nextn::tokenizer {
namespace {

TEST(ByteLevel, MapsBytesAsGpt2Does) {
  EXPECT_EQ(byte_to_codepoint('a'), uint32_t('a'));
  EXPECT_EQ(byte_to_codepoint('!'), uint32_t('!'));
  EXPECT_EQ(byte_to_codepoint(0xA1), 0xA1u);  // printable Latin-1 maps to itself
  EXPECT_EQ(byte_to_codepoint(0x00), 0x100u);  // the 68 others go to U+0100.. in byte order
  EXPECT_EQ(byte_to_codepoint(' '), 0x120u);   // 'Ġ'
  EXPECT_EQ(byte_to_codepoint('\n'), 0x10Au);  // 'Ċ'
  EXPECT_EQ(byte_to_codepoint(0x7F), 0x121u);
  EXPECT_EQ(byte_to_codepoint(0xAD), 0x143u);  // soft hyphen -> 'Ń'
  EXPECT_EQ(bytes_to_byte_level("a b\n"), "a\u0120b\u010A");
}

TEST(ByteLevel, IsABijectionOnAllBytes) {
  std::set<uint32_t> seen;
  for (int byte = 0; byte < 256; ++byte) {
    uint32_t codepoint = byte_to_codepoint(uint8_t(byte));
    EXPECT_TRUE(seen.insert(codepoint).second);
    ASSERT_TRUE(codepoint_to_byte(codepoint).has_value());
    EXPECT_EQ(*codepoint_to_byte(codepoint), byte);
  }
  std::string all;
  for (int byte = 0; byte < 256; ++byte) all += char(byte);
  EXPECT_EQ(byte_level_to_bytes(bytes_to_byte_level(all)), all);
}

TEST(ByteLevel, RejectsTextOutsideTheAlphabet) {
  EXPECT_FALSE(byte_level_to_bytes("\u0200").has_value());  // beyond the table
  EXPECT_FALSE(byte_level_to_bytes(" ").has_value());       // a raw space is not in the alphabet
  EXPECT_FALSE(byte_level_to_bytes("\xC3").has_value());    // not UTF-8
}

TEST(Utf8, SequenceLengthsFollowRfc3629) {
  EXPECT_EQ(utf8_sequence_length("a", 0), 1u);
  EXPECT_EQ(utf8_sequence_length("\xC3\xA9", 0), 2u);
  EXPECT_EQ(utf8_sequence_length("\xE4\xB8\x96", 0), 3u);
  EXPECT_EQ(utf8_sequence_length("\xF0\x9F\x91\x8B", 0), 4u);
  EXPECT_EQ(utf8_sequence_length("\xC0\x80", 0), 0u);          // overlong NUL
  EXPECT_EQ(utf8_sequence_length("\xE0\x80\xAF", 0), 0u);      // overlong '/'
  EXPECT_EQ(utf8_sequence_length("\xED\xA0\x80", 0), 0u);      // surrogate U+D800
  EXPECT_EQ(utf8_sequence_length("\xF4\x90\x80\x80", 0), 0u);  // above U+10FFFF
  EXPECT_EQ(utf8_sequence_length("\x80", 0), 0u);              // stray continuation
  EXPECT_EQ(utf8_sequence_length("\xE4\xB8", 0), 0u);          // cut off
  EXPECT_TRUE(is_valid_utf8("plain \xC3\xA9 \xF0\x9F\x91\x8B"));
  EXPECT_FALSE(is_valid_utf8("bad \xFF"));
  std::size_t length = 0;
  EXPECT_EQ(utf8_decode("\xE4\xB8\x96", 0, length), 0x4E16u);
  EXPECT_EQ(length, 3u);
}

TEST(Utf8, IncompleteSuffixIsWhatMoreBytesCouldComplete) {
  EXPECT_EQ(utf8_incomplete_suffix("ab"), 0u);
  EXPECT_EQ(utf8_incomplete_suffix("a\xE4"), 1u);
  EXPECT_EQ(utf8_incomplete_suffix("a\xE4\xB8"), 2u);
  EXPECT_EQ(utf8_incomplete_suffix("a\xE4\xB8\x96"), 0u);
  EXPECT_EQ(utf8_incomplete_suffix("\xF0\x9F\x91"), 3u);
  EXPECT_EQ(utf8_incomplete_suffix("a\xFF"), 0u);      // never valid: nothing to wait for
  EXPECT_EQ(utf8_incomplete_suffix("a\xE0\x80"), 0u);  // overlong start: never valid
  EXPECT_EQ(utf8_incomplete_suffix("\x80\x80"), 0u);
}

}  // namespace
}  // namespace nextn::tokenizer
