// The special tokens nextn's tokenizers are trained with, spelled as DeepSeek-V3 and
// DeepSeek-Coder spell them (fullwidth bar U+FF5C, lower one-eighth block U+2581), so that a
// nextn tokenizer.json reads like DeepSeek's and DeepSeek's own file is understood too.
// FIM (fill-in-the-middle) prompts are <｜fim▁begin｜>prefix<｜fim▁hole｜>suffix<｜fim▁end｜>middle.
#pragma once

#include <string>
#include <vector>

namespace nextn::tokenizer {

inline const char* const kBosToken = "<\uFF5Cbegin\u2581of\u2581sentence\uFF5C>";
inline const char* const kEosToken = "<\uFF5Cend\u2581of\u2581sentence\uFF5C>";
inline const char* const kPadToken = "<\uFF5C\u2581pad\u2581\uFF5C>";
inline const char* const kFimHoleToken = "<\uFF5Cfim\u2581hole\uFF5C>";
inline const char* const kFimBeginToken = "<\uFF5Cfim\u2581begin\uFF5C>";
inline const char* const kFimEndToken = "<\uFF5Cfim\u2581end\uFF5C>";

// In id order: a trained tokenizer gives them ids 0..5 (BOS 0 and EOS 1, as DeepSeek-V3 does).
inline std::vector<std::string> default_special_tokens() {
  return {kBosToken, kEosToken, kPadToken, kFimHoleToken, kFimBeginToken, kFimEndToken};
}

// Tokens recognised as BOS / EOS / PAD in loaded files, in order of preference (nextn and
// DeepSeek first, then Llama-3, SentencePiece-style and GPT-2 conventions).
inline std::vector<std::string> bos_token_candidates() {
  return {kBosToken, "<|begin_of_text|>", "<s>", "<|endoftext|>"};
}
inline std::vector<std::string> eos_token_candidates() {
  return {kEosToken, "<|end_of_text|>", "</s>", "<|endoftext|>"};
}
inline std::vector<std::string> pad_token_candidates() {
  return {kPadToken, "<pad>", "<|pad|>", "<|padding|>"};
}

}  // namespace nextn::tokenizer
