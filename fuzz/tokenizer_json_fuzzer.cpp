// tokenizer.json: vocabulary, merges, added tokens, components; a tokenizer that loads must
// survive encoding and decoding any text, round-trip it when it is byte-level without a
// normalizer or a prefix space (nextn's own kind), and read its own saved form back the same.
#include "fuzz_support.h"
#include "nextn/tokenizer/byte_level.h"
#include "nextn/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  nextn::fuzz::expect_clean_refusal([&] {
    const auto tok = nextn::tokenizer::Tokenizer::from_json_text(text, "tokenizer.json");
    const std::string sample = "def f(x):\n    return x + 1  # caf\xc3\xa9 \xf0\x9f\x98\x80 \xff\n";
    const auto ids = tok.encode_ordinary(sample);
    const std::string decoded = tok.decode(ids);
    const auto& spec = tok.spec();
    const bool lossless = tok.decodes_per_token() && spec.normalizer.steps.empty() &&
                          spec.pre_tokenizer.is_split_then_byte_level() && !spec.byte_fallback &&
                          !spec.continuing_subword_prefix && !spec.end_of_word_suffix && tok.pre_tokenizer().defers_byte_level();
    bool every_byte = true;  // a byte without a token is dropped, as Hugging Face drops it
    for (int byte = 0; byte < 256 && every_byte; ++byte) {
      every_byte = tok.token_to_id(nextn::tokenizer::bytes_to_byte_level(std::string(1, char(byte)))).has_value();
    }
    if (lossless && every_byte && decoded != sample) std::abort();
    const auto again = nextn::tokenizer::Tokenizer::from_json_text(tok.to_json_text(), "saved");
    if (again.hash() != tok.hash() || again.encode(sample) != tok.encode(sample)) std::abort();
  });
  return 0;
}
