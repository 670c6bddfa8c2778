#include "nextn/tokenizer/decoder.h"

#include "nextn/tokenizer/byte_level.h"
#include "nextn/tokenizer/normalizer.h"
#include "nextn/tokenizer/regex_pattern.h"
#include "nextn/tokenizer/unicode.h"
#include "nextn/tokenizer/utf8.h"
#include "nextn/util/error.h"

namespace nextn::tokenizer {

std::string byte_level_token_bytes(const std::string& token) {
  std::optional<std::string> bytes = byte_level_to_bytes(token);
  return bytes ? *bytes : token;
}

namespace {

using Tokens = std::vector<std::string>;

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "<0xXX>" -> the byte; -1 otherwise. Rust's u8::from_str_radix accepts a leading '+'.
int fallback_byte(const std::string& token) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return -1;
  if (token[3] == '+') return hex_digit(token[4]);
  int high = hex_digit(token[3]), low = hex_digit(token[4]);
  return high < 0 || low < 0 ? -1 : high * 16 + low;
}

Tokens byte_fallback(Tokens tokens) {
  Tokens out;
  std::string bytes;
  auto flush = [&] {
    if (bytes.empty()) return;
    if (is_valid_utf8(bytes)) {
      out.push_back(bytes);
    } else {
      for (std::size_t i = 0; i < bytes.size(); ++i) out.push_back("\xEF\xBF\xBD");
    }
    bytes.clear();
  };
  for (std::string& token : tokens) {
    int byte = fallback_byte(token);
    if (byte >= 0) {
      bytes += char(byte);
      continue;
    }
    flush();
    out.push_back(std::move(token));
  }
  flush();
  return out;
}

// Splits a token into characters (invalid bytes one by one).
std::vector<std::string_view> characters(std::string_view token) {
  std::vector<std::string_view> chars;
  CharCursor cursor{token};
  uint32_t c = 0;
  std::size_t length = 0;
  while (cursor.next(c, length)) chars.push_back(token.substr(cursor.pos - length, length));
  return chars;
}

std::string strip(const std::string& token, const std::string& content, std::size_t start, std::size_t stop) {
  std::vector<std::string_view> chars = characters(token);
  std::size_t start_cut = 0;
  for (std::size_t i = 0; i < start && i < chars.size(); ++i) {
    if (chars[i] != content) break;
    start_cut = i + 1;
  }
  std::size_t stop_cut = chars.size();
  for (std::size_t i = 0; i < stop && i < chars.size(); ++i) {
    std::size_t index = chars.size() - i - 1;
    if (chars[index] != content) break;
    stop_cut = index;
  }
  std::string out;
  for (std::size_t i = start_cut; i < stop_cut; ++i) out += chars[i];
  return out;
}

}  // namespace

Decoder::Decoder(const DecoderSpec& spec) : present_(spec.present) {
  for (const DecoderStep& step : spec.steps) {
    Step compiled{step, nullptr};
    if (step.kind == DecoderStep::Kind::kReplace && step.pattern_is_regex) {
      compiled.regex = std::make_shared<RegexPattern>(step.pattern);
    }
    steps_.push_back(std::move(compiled));
  }
}

std::string Decoder::decode(Tokens tokens) const {
  if (!present_) {
    std::string joined;
    for (std::size_t i = 0; i < tokens.size(); ++i) joined += (i ? " " : "") + tokens[i];
    return joined;
  }
  for (std::size_t s = 0; s < steps_.size(); ++s) {
    const DecoderStep& step = steps_[s].spec;
    switch (step.kind) {
      case DecoderStep::Kind::kByteLevel: {
        std::string bytes;
        for (const std::string& token : tokens) bytes += byte_level_token_bytes(token);
        bool last = s + 1 == steps_.size();
        tokens = Tokens{last ? bytes : to_valid_utf8_lossy(bytes)};
        break;
      }
      case DecoderStep::Kind::kReplace:
        for (std::string& token : tokens) {
          token = steps_[s].regex ? replace_all_regex(token, *steps_[s].regex, step.content)
                                  : replace_all_literal(token, step.pattern, step.content);
        }
        break;
      case DecoderStep::Kind::kStrip:
        for (std::string& token : tokens) token = strip(token, step.content, step.start, step.stop);
        break;
      case DecoderStep::Kind::kFuse: {
        std::string joined;
        for (const std::string& token : tokens) joined += token;
        tokens = Tokens{joined};
        break;
      }
      case DecoderStep::Kind::kByteFallback:
        tokens = byte_fallback(std::move(tokens));
        break;
      case DecoderStep::Kind::kMetaspace:
        for (std::size_t i = 0; i < tokens.size(); ++i) {
          // In the first token every replacement character goes (Hugging Face: meant for the
          // one the pre-tokenizer put in front); elsewhere each becomes a space.
          bool first = i == 0 && step.prepend_scheme != PrependScheme::kNever;
          tokens[i] = replace_all_literal(tokens[i], step.replacement, first ? "" : " ");
        }
        break;
    }
  }
  std::string out;
  for (const std::string& token : tokens) out += token;
  return out;
}

}  // namespace nextn::tokenizer
