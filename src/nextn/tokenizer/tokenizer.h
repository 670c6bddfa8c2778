// The tokenizer nextn trains and reads: BPE in the Hugging Face tokenizer.json format, encoding
// and decoding as Hugging Face tokenizers does (tests/tokenizer/conformance.test.mjs checks it
// against the library itself). Text -> added tokens without normalization cut out -> normalizer
// -> normalized added tokens cut out -> pre-tokenizer pieces -> BPE per piece -> post-processor
// (only when special tokens are asked for). With nextn's own byte-level tokenizers every byte
// string round-trips: decode(encode(x)) == x, invalid UTF-8 included.
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
#include "nextn/tokenizer/decoder.h"
#include "nextn/tokenizer/normalizer.h"
#include "nextn/tokenizer/post_processor.h"
#include "nextn/tokenizer/pretokenizer.h"
#include "nextn/tokenizer/tokenizer_config.h"

namespace nextn::tokenizer {

// Everything a tokenizer.json holds, as the file spells it: vocabulary and merges (in the
// byte-level alphabet for byte-level tokenizers, see byte_level.h), added tokens as raw text, the
// components. The defaults are what nextn's trainer writes.
struct TokenizerSpec {
  std::vector<std::pair<std::string, int32_t>> vocab;       // token text -> id
  std::vector<std::pair<std::string, std::string>> merges;  // by rank
  std::vector<AddedToken> added_tokens;
  NormalizerSpec normalizer;
  PreTokenizerSpec pre_tokenizer;
  PostProcessorSpec post_processor = byte_level_post_processor();
  DecoderSpec decoder = byte_level_decoder();
  // The BPE model's options (Hugging Face's field names).
  bool ignore_merges = false;
  bool byte_fallback = false;
  bool fuse_unk = false;
  std::optional<std::string> unk_token;
  std::optional<std::string> continuing_subword_prefix;
  std::optional<std::string> end_of_word_suffix;

  static PostProcessorSpec byte_level_post_processor();
  static DecoderSpec byte_level_decoder();
};

class Tokenizer {
 public:
  // Reads a Hugging Face tokenizer.json, and the tokenizer_config.json beside it when there is
  // one. Errors name the file and the field; features nextn does not implement (other models,
  // other component types) are errors, never ignored.
  static Tokenizer load(const std::string& tokenizer_json_path);
  static Tokenizer from_json_text(std::string_view json_text, const std::string& source_name);

  // Validates `spec`: ids unique, merges consistent, special tokens defined.
  explicit Tokenizer(TokenizerSpec spec, TokenizerConfig config = {});

  void save(const std::string& path) const;  // atomic
  std::string to_json_text() const;

  // Added tokens appearing in `text` become their ids (Hugging Face semantics). With
  // add_special_tokens, the post-processor adds what it adds (BOS/EOS per the file); without,
  // nothing is added (Hugging Face's add_special_tokens=False).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;
  // Every byte of `text` is ordinary text, even where it spells a special token: what training
  // data goes through, so that a document can never forge an EOS.
  std::vector<int32_t> encode_ordinary(std::string_view text) const;
  void encode_ordinary_append(std::string_view text, std::vector<int32_t>& out) const;

  // The tokens through the file's decoder (byte-level: the bytes of all tokens, concatenated).
  // Invalid ids are an error (Hugging Face skips them). to_valid_utf8_lossy (unicode.h) of the
  // result is Hugging Face's string.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;
  // Added tokens whose id in this file is not the one Hugging Face gives them (it ignores the
  // file's ids: see hugging_face_id_differences in tokenizer.cpp). Empty for files that agree,
  // which nextn's trainer writes since tokenizer.json conformance; older nextn files list their
  // special tokens here.
  std::vector<std::string> hugging_face_id_differences() const;

  // True when each token decodes to bytes of its own (the ByteLevel decoder alone), so that a
  // stream of ids can be decoded token by token.
  bool decodes_per_token() const;
  // The bytes of one token (decodes_per_token() only).
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
  const TokenizerConfig& config() const;
  const PreTokenizer& pre_tokenizer() const;
  std::size_t num_merges() const;

  struct State;  // implementation detail (tokenizer.cpp), shared between copies

 private:
  std::shared_ptr<const State> state_;
};

// Turns a stream of ids into text pieces as soon as they form complete UTF-8 characters (for
// streaming generation). The concatenation of everything push() and flush() return equals
// decode() of the same ids; bytes that can never become valid UTF-8 are passed on as they are.
// Decoders that look across tokens (Metaspace, ByteFallback...) are handled as Hugging Face's
// DecodeStream does: the ids since the last complete text are decoded again as each one comes.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer);
  std::string push(int32_t id);
  std::string flush();

 private:
  Tokenizer tokenizer_;
  std::string pending_;
  // Decoders across tokens: every id so far, and the text already handed out.
  std::vector<int32_t> ids_;
  std::size_t emitted_ = 0;
};

}  // namespace nextn::tokenizer
