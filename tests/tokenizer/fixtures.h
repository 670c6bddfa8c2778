// Small tokenizers whose ids can be worked out by hand.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "nextn/tokenizer/byte_level.h"
#include "nextn/tokenizer/pretokenizer.h"

namespace nextn::tokenizer::testing {

// A tokenizer.json in the shape of DeepSeek-V3's (Sequence of Isolated Splits + ByteLevel,
// empty normalizer Sequence, ByteLevel post-processor and decoder). Ids 0..255 are the bytes,
// id == byte value; then one id per merge result, in merge order, from 256.
inline nlohmann::json tiny_tokenizer_json(const std::vector<std::string>& merges) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int byte = 0; byte < 256; ++byte) vocab[bytes_to_byte_level(std::string(1, char(byte)))] = byte;
  int next_id = 256;
  for (const std::string& merge : merges) {
    std::size_t space = merge.find(' ');
    std::string result = merge.substr(0, space) + merge.substr(space + 1);
    if (!vocab.contains(result)) vocab[result] = next_id++;
  }
  nlohmann::json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = nlohmann::json::array();
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", nlohmann::json::array()}};
  nlohmann::json steps = nlohmann::json::array();
  for (const PreTokenizerStep& step : deepseek_v3_pre_tokenizer().steps) {
    if (step.kind != PreTokenizerStep::Kind::kSplit) continue;
    steps.push_back({{"type", "Split"}, {"pattern", {{"Regex", step.pattern.pattern}}}, {"behavior", "Isolated"}, {"invert", false}});
  }
  steps.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}});
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", steps}};
  j["post_processor"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  j["model"] = {{"type", "BPE"},          {"dropout", nullptr},    {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},           {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},       {"byte_fallback", false}, {"vocab", vocab},
                {"merges", merges}};
  return j;
}

inline nlohmann::json added_token(int id, const std::string& content, bool special, bool normalized) {
  return {{"id", id},          {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false},   {"normalized", normalized}, {"special", special}};
}

// The merges of "hello world" used by several tests: he=256 ll=257 hell=258 hello=259 Ġw=260
// or=261 Ġwor=262.
inline std::vector<std::string> hello_world_merges() {
  return {"h e", "l l", "he ll", "hell o", "\u0120 w", "o r", "\u0120w or"};
}

}  // namespace nextn::tokenizer::testing
