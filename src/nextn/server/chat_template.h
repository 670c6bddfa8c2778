// How chat messages become a prompt's token ids. The Jinja templates of tokenizer_config.json are
// not interpreted; two formats are rendered natively, and the server says at start which one it
// uses and why (`choose_chat_format`):
//
// - DeepSeek-V3's, when the model's chat template is DeepSeek-V3's (its markers below and its
//   system prompt gathered first, none of the thinking markers of R1's and V3.1's) and the
//   tokenizer has the markers as added tokens and a BOS: what that template renders for messages
//   without tool calls, with add_generation_prompt (a "developer" message counts as "system"; the
//   template itself would drop it):
//
//     <bos> + the system messages' contents joined by "\n\n"
//           + per user message "<｜User｜>" + content
//           + per assistant message "<｜Assistant｜>" + content + "<｜end▁of▁sentence｜>"
//           + "<｜Assistant｜>"
//
// - plain, for every other model (those trained by nextn have no template), documented in the README:
//
//     System: <content>\n\n          (for each system message)
//     User: <content>\n\n            (for each user message)
//     Assistant: <content>\n\n       (for each earlier assistant message)
//     Assistant:                     (where the reply starts)
//
//   after the EOS that starts a document (as a text prompt), the reply ending at "\nUser:" or
//   "\nSystem:" besides the request's own stop strings.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nextn/server/openai_protocol.h"
#include "nextn/tokenizer/tokenizer.h"

namespace nextn::server {

enum class ChatFormat { kPlain, kDeepSeekV3 };

struct ChatFormatChoice {
  ChatFormat format = ChatFormat::kPlain;
  std::string reason;  // for the server's start-up line
};

// The format for a model whose tokenizer (and the tokenizer_config.json beside it) is `tok`.
ChatFormatChoice choose_chat_format(const tokenizer::Tokenizer& tok);
const char* chat_format_name(ChatFormat format);

// The text of the messages in `format`, without the token that starts the document.
std::string render_chat(ChatFormat format, const std::vector<ChatMessage>& messages);
// The prompt's ids: the document's first token (BOS for DeepSeek-V3's format, EOS for the plain
// one, as a text prompt), then the rendered text with added tokens as their ids.
std::vector<int64_t> chat_prompt_ids(ChatFormat format, const std::vector<ChatMessage>& messages,
                                     const tokenizer::Tokenizer& tok);
// Stop strings every chat reply in `format` has besides the request's own.
std::vector<std::string> chat_stop_strings(ChatFormat format);

}  // namespace nextn::server
