// tokenizer_config.json, the file beside tokenizer.json that Hugging Face transformers reads:
// which tokens are BOS/EOS/PAD, whether BOS/EOS are added, and the chat template. nextn reads the
// keys below when the file is present (each validated; the many other keys are left alone).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nextn::tokenizer {

struct TokenizerConfig {
  bool present = false;
  // Token contents; the file may give each as a string or as an AddedToken object.
  std::optional<std::string> bos_token, eos_token, pad_token, unk_token;
  std::optional<bool> add_bos_token, add_eos_token;
  // The Jinja text, kept as it is for the server; a file with several named templates gives the
  // one named "default" here and all of them in named_chat_templates.
  std::optional<std::string> chat_template;
  std::vector<std::pair<std::string, std::string>> named_chat_templates;
};

TokenizerConfig parse_tokenizer_config(std::string_view json_text, const std::string& source_name);
// Reads `path` when it exists; a config without the file otherwise.
TokenizerConfig load_tokenizer_config_if_present(const std::string& path);

}  // namespace nextn::tokenizer
