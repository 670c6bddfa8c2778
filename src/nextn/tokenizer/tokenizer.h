// The tokenizer nextn trains and reads: byte-level BPE in the Hugging Face tokenizer.json format.
// Text -> added tokens cut out -> pre-tokenizer pieces -> BPE per piece. Every byte string
// round-trips: decode(encode(x)) == x, invalid UTF-8 included, because every byte has a token.
// Plain C++ (no torch) so that it compiles fast and can be used anywhere.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nextn/tokenizer/added_tokens.h"
#include "nextn/tokenizer/pretokenizer.h"

namespace nextn::tokenizer {

// Everything a tokenizer.json holds that changes ids, as the file spells it: vocabulary and
// merges in the byte-level alphabet (see byte_level.h), added tokens as raw text.
struct TokenizerSpec {
  std::vector<std::pair<std::string, int32_t>> vocab;       // token text -> id
  std::vector<std::pair<std::string, std::string>> merges;  // by rank
  std::vector<AddedToken> added_tokens;
  PreTokenizerSpec pre_tokenizer;
  bool ignore_merges = false;
  std::optional<std::string> unk_token;  // kept for the file's sake; never used (all bytes are tokens)
};

class Tokenizer {
 public:
  // Reads a Hugging Face tokenizer.json. Errors name the file and the field; features nextn does
  // not implement (normalizers, other models, lstrip/rstrip tokens...) are errors, never ignored.
  static Tokenizer load(const std::string& tokenizer_json_path);
  static Tokenizer from_json_text(std::string_view json_text, const std::string& source_name);

  // Validates `spec`: ids unique, all 256 bytes in the vocabulary, merges consistent.
  explicit Tokenizer(TokenizerSpec spec);

  void save(const std::string& path) const;  // atomic
  std::string to_json_text() const;

  // Added tokens appearing in `text` become their ids (Hugging Face semantics); encode adds no
  // BOS/EOS of its own.
  std::vector<int32_t> encode(std::string_view text) const;
  // Every byte of `text` is ordinary text, even where it spells a special token: what training
  // data goes through, so that a document can never forge an EOS.
  std::vector<int32_t> encode_ordinary(std::string_view text) const;
  void encode_ordinary_append(std::string_view text, std::vector<int32_t>& out) const;

  // The bytes of all tokens, concatenated (added tokens give their content). Invalid ids are
  // an error.
  std::string decode(const std::vector<int32_t>& ids) const;
  void append_token_bytes(int32_t id, std::string& out) const;

  int32_t vocab_size() const;  // highest id + 1
  // Errors when the tokenizer has no such token; pad_id() falls back to the EOS token.
  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t pad_id() const;
  std::optional<int32_t> find_bos_id() const;
  std::optional<int32_t> find_eos_id() const;

  // A model token by its tokenizer.json text (byte-level alphabet) or an added token by content.
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::optional<std::string> id_to_token(int32_t id) const;
  bool is_added_token(int32_t id) const;

  // SHA-256 over the canonical content (vocabulary, merges, added tokens, pre-tokenizer), as
  // "sha256:<hex>". Independent of JSON formatting; written into dataset manifests.
  std::string hash() const;

  const TokenizerSpec& spec() const;
  const PreTokenizer& pre_tokenizer() const;
  std::size_t num_merges() const;

  struct State;  // implementation detail (tokenizer.cpp), shared between copies

 private:
  std::shared_ptr<const State> state_;
};

// Turns a stream of ids into text pieces as soon as they form complete UTF-8 characters (for
// streaming generation). The concatenation of everything push() and flush() return equals
// decode() of the same ids; bytes that can never become valid UTF-8 are passed on as they are.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer);
  std::string push(int32_t id);
  std::string flush();

 private:
  Tokenizer tokenizer_;
  std::string pending_;
};

}  // namespace nextn::tokenizer
