// Chat formats: DeepSeek-V3's template rendered for messages without tool calls, the plain one,
// and which a model gets. (tests/server/chat_template.test.mjs checks the DeepSeek-V3 rendering
// against the real template run by a Jinja engine, through /tokenize.)
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "nextn/io/atomic_file.h"
#include "nextn/server/chat_template.h"
#include "test_support.h"
#include "tokenizer/fixtures.h"

namespace nextn::server {
namespace {

using nlohmann::json;

constexpr int32_t kBos = 263, kEos = 264, kUser = 265, kAssistant = 266;

// A byte-level tokenizer with DeepSeek-V3's special tokens as added tokens (ids above), and a
// tokenizer_config.json holding `chat_template` unless it is empty.
tokenizer::Tokenizer tokenizer_with(const testing::TempDir& dir, const std::string& chat_template,
                                    bool with_user_token = true, bool with_bos = true) {
  using tokenizer::testing::added_token;
  json j = tokenizer::testing::tiny_tokenizer_json(tokenizer::testing::hello_world_merges());
  j["added_tokens"] = json::array({added_token(kEos, "<｜end▁of▁sentence｜>", true, false),
                                   added_token(kAssistant, "<｜Assistant｜>", false, true)});
  if (with_bos) j["added_tokens"].push_back(added_token(kBos, "<｜begin▁of▁sentence｜>", true, false));
  if (with_user_token) j["added_tokens"].push_back(added_token(kUser, "<｜User｜>", false, true));
  io::write_file_atomic(dir.file("tokenizer.json"), j.dump());
  json config = {{"eos_token", "<｜end▁of▁sentence｜>"}};
  if (with_bos) config["bos_token"] = "<｜begin▁of▁sentence｜>";
  if (!chat_template.empty()) config["chat_template"] = chat_template;
  io::write_file_atomic(dir.file("tokenizer_config.json"), config.dump());
  return tokenizer::Tokenizer::load(dir.file("tokenizer.json"));
}

// The parts of DeepSeek-V3's template (its tokenizer_config.json) that the detection looks at.
const std::string kDeepSeekTemplate =
    "{{bos_token}}{{ns.system_prompt}}{%- for message in messages %}{%- if message['role'] == 'user' %}"
    "{{'<｜User｜>' + message['content']}}{%- endif %}{{'<｜Assistant｜>' + message['content'] + "
    "'<｜end▁of▁sentence｜>'}}{%- endfor -%}{% if add_generation_prompt %}{{'<｜Assistant｜>'}}{% endif %}";

const std::vector<ChatMessage> kConversation = {
    {"system", "be brief"}, {"user", "hello"}, {"assistant", "world"}, {"system", "or not"}, {"user", "hello world"}};

TEST(ChatFormat, DeepSeekV3RendersItsTemplateForMessagesWithoutTools) {
  // System messages first, joined by a blank line, wherever they stand; each assistant turn closed
  // by the end-of-sentence token; the reply starts after <｜Assistant｜>.
  EXPECT_EQ(render_chat(ChatFormat::kDeepSeekV3, kConversation),
            "be brief\n\nor not<｜User｜>hello<｜Assistant｜>world<｜end▁of▁sentence｜><｜User｜>hello world<｜Assistant｜>");
  EXPECT_EQ(render_chat(ChatFormat::kDeepSeekV3, {{"user", "hi"}}), "<｜User｜>hi<｜Assistant｜>");

  // Ids: BOS, then the text with each special token as its own id (split by hand here).
  testing::TempDir dir("chat_deepseek");
  const tokenizer::Tokenizer tok = tokenizer_with(dir, kDeepSeekTemplate);
  std::vector<int64_t> expected = {kBos};
  auto text = [&](const std::string& piece) {
    for (int32_t id : tok.encode(piece)) expected.push_back(id);
  };
  text("be brief\n\nor not");
  expected.push_back(kUser);
  text("hello");
  expected.push_back(kAssistant);
  text("world");
  expected.push_back(kEos);
  expected.push_back(kUser);
  text("hello world");
  expected.push_back(kAssistant);
  EXPECT_EQ(chat_prompt_ids(ChatFormat::kDeepSeekV3, kConversation, tok), expected);
  EXPECT_EQ(tok.encode("hello world"), (std::vector<int32_t>{259, 262, 108, 100}));  // the merges applied
  EXPECT_TRUE(chat_stop_strings(ChatFormat::kDeepSeekV3).empty());  // its replies end with the EOS
}

TEST(ChatFormat, PlainRendersTheDocumentedTemplateAfterEos) {
  EXPECT_EQ(render_chat(ChatFormat::kPlain, kConversation),
            "System: be brief\n\nUser: hello\n\nAssistant: world\n\nSystem: or not\n\nUser: hello world\n\nAssistant:");
  testing::TempDir dir("chat_plain");
  const tokenizer::Tokenizer tok = tokenizer_with(dir, "");
  std::vector<int64_t> expected = {tok.eos_id()};
  for (int32_t id : tok.encode("User: hi\n\nAssistant:")) expected.push_back(id);
  EXPECT_EQ(chat_prompt_ids(ChatFormat::kPlain, {{"user", "hi"}}, tok), expected);
  EXPECT_EQ(chat_stop_strings(ChatFormat::kPlain), (std::vector<std::string>{"\nUser:", "\nSystem:"}));
}

TEST(ChatFormat, AModelGetsDeepSeekV3sOnlyWithItsTemplateAndTokens) {
  testing::TempDir dir("chat_choice");
  auto choice = [&](const std::string& chat_template, bool with_user_token = true, bool with_bos = true) {
    return choose_chat_format(tokenizer_with(dir, chat_template, with_user_token, with_bos));
  };
  EXPECT_EQ(choice(kDeepSeekTemplate).format, ChatFormat::kDeepSeekV3);
  const ChatFormatChoice none = choice("");
  EXPECT_EQ(none.format, ChatFormat::kPlain);
  EXPECT_EQ(none.reason, "the model has no chat template");
  const ChatFormatChoice chatml = choice("{% for m in messages %}<|im_start|>{{ m['role'] }}{% endfor %}");
  EXPECT_EQ(chatml.format, ChatFormat::kPlain);
  EXPECT_NE(chatml.reason.find("not one nextn renders"), std::string::npos) << chatml.reason;
  // R1's and V3.1's templates add thinking markers this rendering does not have.
  const ChatFormatChoice r1 = choice(kDeepSeekTemplate + "{{'<｜Assistant｜><think>\\n'}}");
  EXPECT_EQ(r1.format, ChatFormat::kPlain);
  EXPECT_NE(r1.reason.find("thinking"), std::string::npos) << r1.reason;
  // The template, but "<｜User｜>" would be tokenized as text: not DeepSeek-V3's prompts.
  const ChatFormatChoice untokenized = choice(kDeepSeekTemplate, false);
  EXPECT_EQ(untokenized.format, ChatFormat::kPlain);
  EXPECT_NE(untokenized.reason.find("no added token <｜User｜>"), std::string::npos) << untokenized.reason;
  // The markers, but system text placed inline (DeepSeek-V2.5's form): not V3's.
  const ChatFormatChoice inline_system = choice("{{ bos_token }}{% for message in messages %}{{ message['content'] }}"
                                                "{{'<｜User｜>'}}{{'<｜Assistant｜>'}}{{'<｜end▁of▁sentence｜>'}}{% endfor %}");
  EXPECT_EQ(inline_system.format, ChatFormat::kPlain);
  // No BOS to start the prompt with: the plain template, said, rather than a server that fails.
  const ChatFormatChoice no_bos = choice(kDeepSeekTemplate, true, false);
  EXPECT_EQ(no_bos.format, ChatFormat::kPlain);
  EXPECT_NE(no_bos.reason.find("names none"), std::string::npos) << no_bos.reason;
}

}  // namespace
}  // namespace nextn::server
