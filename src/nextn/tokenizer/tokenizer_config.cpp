#include "nextn/tokenizer/tokenizer_config.h"

#include <nlohmann/json.hpp>

#include "nextn/io/atomic_file.h"
#include "nextn/io/json_strict.h"
#include "nextn/util/error.h"

namespace nextn::tokenizer {
namespace {

using json = nlohmann::json;

std::optional<std::string> token_content(const json& root, const char* key, const std::string& source) {
  auto it = root.find(key);
  if (it == root.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto content = it->find("content");
    if (content != it->end() && content->is_string()) return content->get<std::string>();
    fail(source, ": ", key, ": an AddedToken object needs a string 'content'");
  }
  fail(source, ": ", key, ": expected a string, an AddedToken object or null, found ", it->type_name());
}

std::optional<bool> optional_flag(const json& root, const char* key, const std::string& source) {
  auto it = root.find(key);
  if (it == root.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) fail(source, ": ", key, ": expected true or false, found ", it->type_name());
  return it->get<bool>();
}

}  // namespace

TokenizerConfig parse_tokenizer_config(std::string_view json_text, const std::string& source_name) {
  const json root = io::parse_json_rejecting_duplicate_keys(std::string(json_text), source_name);
  NEXTN_CHECK(root.is_object(), source_name, ": expected a JSON object at the top level");
  TokenizerConfig config;
  config.present = true;
  config.bos_token = token_content(root, "bos_token", source_name);
  config.eos_token = token_content(root, "eos_token", source_name);
  config.pad_token = token_content(root, "pad_token", source_name);
  config.unk_token = token_content(root, "unk_token", source_name);
  config.add_bos_token = optional_flag(root, "add_bos_token", source_name);
  config.add_eos_token = optional_flag(root, "add_eos_token", source_name);
  auto it = root.find("chat_template");
  if (it != root.end() && !it->is_null()) {
    if (it->is_string()) {
      config.chat_template = it->get<std::string>();
    } else if (it->is_array()) {
      for (std::size_t i = 0; i < it->size(); ++i) {
        const json& entry = (*it)[i];
        NEXTN_CHECK(entry.is_object() && entry.contains("name") && entry["name"].is_string() &&
                        entry.contains("template") && entry["template"].is_string(),
                    source_name, ": chat_template[", i, "]: expected {\"name\": string, \"template\": string}");
        config.named_chat_templates.emplace_back(entry["name"].get<std::string>(), entry["template"].get<std::string>());
        if (entry["name"] == "default") config.chat_template = entry["template"].get<std::string>();
      }
    } else {
      fail(source_name, ": chat_template: expected a string or a list of named templates, found ", it->type_name());
    }
  }
  return config;
}

TokenizerConfig load_tokenizer_config_if_present(const std::string& path) {
  if (!io::file_exists(path)) return {};
  return parse_tokenizer_config(io::read_file(path), path);
}

}  // namespace nextn::tokenizer
