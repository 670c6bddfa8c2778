#include "nextn/tokenizer/simple_split.h"

#include <array>
#include <cstdint>

namespace nextn::tokenizer {

const char* const kSimpleSplitPattern =
    R"re( ?(?:[A-Za-z_]|[^\x00-\x7F])+|[0-9]{1,3}| ?[\x00-\x08\x0E-\x1F!-/:-@\[-\^`{-\x7F]+[\r\n]*|[\t\n\x0B\x0C\r ]*[\r\n]+|[\t\n\x0B\x0C\r ]+(?![^\t\n\x0B\x0C\r ])|[\t\n\x0B\x0C\r ]+)re";

namespace {

enum class ByteClass : uint8_t { kLetter, kDigit, kSpace, kOther };

std::array<ByteClass, 256> make_byte_classes() {
  std::array<ByteClass, 256> classes{};
  for (int byte = 0; byte < 256; ++byte) {
    ByteClass c = ByteClass::kOther;
    if ((byte >= 'A' && byte <= 'Z') || (byte >= 'a' && byte <= 'z') || byte == '_' || byte >= 0x80) {
      c = ByteClass::kLetter;
    } else if (byte >= '0' && byte <= '9') {
      c = ByteClass::kDigit;
    } else if (byte == ' ' || (byte >= '\t' && byte <= '\r')) {
      c = ByteClass::kSpace;
    }
    classes[byte] = c;
  }
  return classes;
}

const std::array<ByteClass, 256> kByteClasses = make_byte_classes();

ByteClass class_at(std::string_view text, std::size_t pos) { return kByteClasses[uint8_t(text[pos])]; }

bool is_newline(char c) { return c == '\n' || c == '\r'; }

std::size_t skip_class(std::string_view text, std::size_t pos, ByteClass c) {
  while (pos < text.size() && class_at(text, pos) == c) ++pos;
  return pos;
}

std::size_t skip_newlines(std::string_view text, std::size_t pos) {
  while (pos < text.size() && is_newline(text[pos])) ++pos;
  return pos;
}

// End of the white-space piece that starts at `start` (see kSimpleSplitPattern's last three
// alternatives).
std::size_t end_of_space_piece(std::string_view text, std::size_t start) {
  std::size_t run_end = skip_class(text, start, ByteClass::kSpace);
  for (std::size_t pos = run_end; pos > start; --pos) {
    if (is_newline(text[pos - 1])) return pos;  // up to and including the last newline
  }
  if (run_end == text.size() || run_end - start == 1) return run_end;
  return run_end - 1;  // leave one space to lead the next word
}

std::size_t end_of_piece(std::string_view text, std::size_t start) {
  ByteClass c = class_at(text, start);
  if (text[start] == ' ' && start + 1 < text.size()) {
    ByteClass next = class_at(text, start + 1);
    if (next == ByteClass::kLetter) return skip_class(text, start + 1, ByteClass::kLetter);
    if (next == ByteClass::kOther) return skip_newlines(text, skip_class(text, start + 1, ByteClass::kOther));
  }
  switch (c) {
    case ByteClass::kLetter:
      return skip_class(text, start, ByteClass::kLetter);
    case ByteClass::kDigit: {
      std::size_t end = start;
      while (end < text.size() && end - start < 3 && class_at(text, end) == ByteClass::kDigit) ++end;
      return end;
    }
    case ByteClass::kOther:
      return skip_newlines(text, skip_class(text, start, ByteClass::kOther));
    case ByteClass::kSpace:
      return end_of_space_piece(text, start);
  }
  return start + 1;
}

}  // namespace

void simple_split(std::string_view text, std::vector<std::string_view>& pieces) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = end_of_piece(text, pos);
    pieces.push_back(text.substr(pos, end - pos));
    pos = end;
  }
}

}  // namespace nextn::tokenizer
