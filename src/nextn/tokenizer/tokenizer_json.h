// Reading and writing Hugging Face tokenizer.json files: model BPE with every option but dropout,
// the normalizers, pre-tokenizers, post-processors and decoders of normalizer.h, pretokenizer.h,
// post_processor.h and decoder.h, added tokens with all their flags. Anything else (another
// model, a component type nextn does not implement, truncation, padding, an unknown field) is an
// error that names the field and the value.
#pragma once

#include <string>
#include <string_view>

#include "nextn/tokenizer/tokenizer.h"

namespace nextn::tokenizer {

// `source_name` (usually the path) prefixes every error message.
TokenizerSpec parse_tokenizer_json(std::string_view json_text, const std::string& source_name);

// Deterministic output: the same spec always gives the same bytes (vocabulary in id order).
std::string write_tokenizer_json(const TokenizerSpec& spec);

// A step's "type" as tokenizer.json spells it ("NFC", "Split", "TemplateProcessing", ...).
std::string step_type_name(const NormalizerStep& step);
std::string step_type_name(const PreTokenizerStep& step);
std::string step_type_name(const PostProcessorStep& step);
std::string step_type_name(const DecoderStep& step);

// The components and the model's options, without vocabulary, merges and added tokens (for the
// content hash).
std::string write_tokenizer_components_json(const TokenizerSpec& spec);

}  // namespace nextn::tokenizer
