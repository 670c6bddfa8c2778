#include "nextn/server/chat_template.h"

namespace nextn::server {

std::string render_plain_chat(const std::vector<ChatMessage>& messages) {
  std::string prompt;
  for (const ChatMessage& m : messages) {
    const char* name = m.role == "system" ? "System" : m.role == "assistant" ? "Assistant" : "User";
    prompt += std::string(name) + ": " + m.content + "\n\n";
  }
  return prompt + "Assistant:";
}

std::vector<std::string> plain_chat_stop_strings() { return {"\nUser:", "\nSystem:"}; }

}  // namespace nextn::server
