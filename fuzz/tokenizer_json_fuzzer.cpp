// tokenizer.json: vocabulary, merges, added tokens, pre-tokenizer; a tokenizer that loads must
// round-trip text through encode and decode, and through its own saved form.
#include "fuzz_support.h"
#include "nextn/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  nextn::fuzz::expect_clean_refusal([&] {
    const auto tok = nextn::tokenizer::Tokenizer::from_json_text(text, "tokenizer.json");
    const std::string sample = "def f(x):\n    return x + 1  # caf\xc3\xa9 \xf0\x9f\x98\x80 \xff\n";
    if (tok.decode(tok.encode_ordinary(sample)) != sample) std::abort();
    const auto again = nextn::tokenizer::Tokenizer::from_json_text(tok.to_json_text(), "saved");
    if (again.hash() != tok.hash() || again.encode(sample) != tok.encode(sample)) std::abort();
  });
  return 0;
}
