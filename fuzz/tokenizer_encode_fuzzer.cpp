// Encoding arbitrary bytes (invalid UTF-8 included, special-token spellings inside) with a real
// byte-level BPE tokenizer (fuzz/tokenizer.json): decode(encode_ordinary(x)) == x for every x, and
// encode (which turns added-token spellings into their ids) decodes to x as well.
#include "fuzz_support.h"
#include "nextn/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto tok = nextn::tokenizer::Tokenizer::load(NEXTN_FUZZ_TOKENIZER);
  const std::string text(reinterpret_cast<const char*>(data), size);
  nextn::fuzz::expect_clean_refusal([&] {
    const auto ordinary = tok.encode_ordinary(text);
    for (int32_t id : ordinary) {
      if (id < 0 || id >= tok.vocab_size()) std::abort();
    }
    if (tok.decode(ordinary) != text) std::abort();
    if (tok.decode(tok.encode(text)) != text) std::abort();
  });
  return 0;
}
