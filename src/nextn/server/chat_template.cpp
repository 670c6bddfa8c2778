#include "nextn/server/chat_template.h"

namespace nextn::server {
namespace {

// DeepSeek-V3's special tokens (its tokenizer.json's added tokens).
constexpr const char* kUser = "<｜User｜>";
constexpr const char* kAssistant = "<｜Assistant｜>";
constexpr const char* kEndOfSentence = "<｜end▁of▁sentence｜>";

bool contains(const std::string& text, const char* part) { return text.find(part) != std::string::npos; }

std::string render_plain(const std::vector<ChatMessage>& messages) {
  std::string prompt;
  for (const ChatMessage& m : messages) {
    const char* name = m.role == "system" ? "System" : m.role == "assistant" ? "Assistant" : "User";
    prompt += std::string(name) + ": " + m.content + "\n\n";
  }
  return prompt + "Assistant:";
}

// DeepSeek-V3's template: the system messages go first, whatever their place among the others.
std::string render_deepseek_v3(const std::vector<ChatMessage>& messages) {
  std::string prompt;
  bool first_system = true;
  for (const ChatMessage& m : messages) {
    if (m.role != "system") continue;
    prompt += (first_system ? "" : "\n\n") + m.content;
    first_system = false;
  }
  for (const ChatMessage& m : messages) {
    if (m.role == "user") prompt += kUser + m.content;
    if (m.role == "assistant") prompt += kAssistant + m.content + kEndOfSentence;
  }
  return prompt + kAssistant;
}

}  // namespace

ChatFormatChoice choose_chat_format(const tokenizer::Tokenizer& tok) {
  const auto& template_text = tok.config().chat_template;
  if (!template_text) return {ChatFormat::kPlain, "the model has no chat template"};
  // Its markers, and the system prompt gathered up front (DeepSeek-V3's "ns.system_prompt"; V2.5's
  // template places system text inline).
  const bool deepseek = contains(*template_text, kUser) && contains(*template_text, kAssistant) &&
                        contains(*template_text, kEndOfSentence) && contains(*template_text, "ns.system_prompt");
  if (!deepseek) {
    return {ChatFormat::kPlain, "the model's chat template is not one nextn renders (only DeepSeek-V3's is): chat "
                                "requests get the plain template"};
  }
  if (contains(*template_text, "<think>") || contains(*template_text, "</think>")) {
    return {ChatFormat::kPlain, "the model's chat template is DeepSeek's with thinking markers (R1, V3.1), which "
                                "nextn does not render: chat requests get the plain template"};
  }
  for (const char* marker : {kUser, kAssistant, kEndOfSentence}) {
    const auto id = tok.token_to_id(marker);
    if (!id || !tok.is_added_token(*id)) {
      return {ChatFormat::kPlain, std::string("the model's chat template is DeepSeek-V3's but its tokenizer has no "
                                              "added token ") + marker + ": chat requests get the plain template"};
    }
  }
  if (!tok.find_bos_id()) {
    return {ChatFormat::kPlain, "the model's chat template is DeepSeek-V3's, whose prompts start with the BOS token, "
                                "but its tokenizer names none: chat requests get the plain template"};
  }
  return {ChatFormat::kDeepSeekV3, "the model's chat template is DeepSeek-V3's"};
}

const char* chat_format_name(ChatFormat format) {
  return format == ChatFormat::kDeepSeekV3 ? "DeepSeek-V3" : "plain";
}

std::string render_chat(ChatFormat format, const std::vector<ChatMessage>& messages) {
  return format == ChatFormat::kDeepSeekV3 ? render_deepseek_v3(messages) : render_plain(messages);
}

std::vector<int64_t> chat_prompt_ids(ChatFormat format, const std::vector<ChatMessage>& messages,
                                     const tokenizer::Tokenizer& tok) {
  std::vector<int64_t> ids = {format == ChatFormat::kDeepSeekV3 ? tok.bos_id() : tok.eos_id()};
  for (int32_t id : tok.encode(render_chat(format, messages))) ids.push_back(id);
  return ids;
}

std::vector<std::string> chat_stop_strings(ChatFormat format) {
  if (format == ChatFormat::kDeepSeekV3) return {};  // the reply ends with <｜end▁of▁sentence｜>, the EOS
  return {"\nUser:", "\nSystem:"};
}

}  // namespace nextn::server
