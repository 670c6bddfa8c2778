// How chat messages become a prompt. Models trained by nextn have no chat format of their own,
// and the Jinja templates of tokenizer_config.json are not rendered here, so chat requests use
// one documented plain template (README, Serving):
//
//   System: <content>\n\n          (for each system message)
//   User: <content>\n\n            (for each user message)
//   Assistant: <content>\n\n       (for each earlier assistant message)
//   Assistant:                     (where the reply starts)
//
// and the reply ends at "\nUser:" or "\nSystem:" besides the request's own stop strings.
#pragma once

#include <string>
#include <vector>

#include "nextn/server/openai_protocol.h"

namespace nextn::server {

std::string render_plain_chat(const std::vector<ChatMessage>& messages);
std::vector<std::string> plain_chat_stop_strings();

}  // namespace nextn::server
