// The OpenAI request parser's checks and the UTF-8 cleaning of text that goes into JSON.
#include <gtest/gtest.h>

#include "nextn/server/openai_protocol.h"
#include "nextn/util/error.h"

namespace nextn::server {
namespace {

void expect_refused(Endpoint endpoint, const std::string& body, const std::string& param, int status = 400) {
  try {
    parse_completion_request(endpoint, body);
    ADD_FAILURE() << "accepted: " << body;
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), status) << body;
    const auto j = e.to_json();
    EXPECT_EQ(j["error"]["param"].is_null() ? std::string() : j["error"]["param"].get<std::string>(), param) << body;
    EXPECT_FALSE(j["error"]["message"].get<std::string>().empty());
    EXPECT_TRUE(j["error"].contains("type") && j["error"].contains("code"));
  }
}

TEST(OpenAiProtocol, CompletionFieldsAndDefaults) {
  auto r = parse_completion_request(Endpoint::kCompletions, R"({"model":"m","prompt":"hi"})");
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(*r.prompt_text, "hi");
  EXPECT_EQ(*r.max_tokens, 16);  // OpenAI's completions default
  EXPECT_EQ(r.temperature, 1.0);
  EXPECT_FALSE(r.stream);
  EXPECT_EQ(r.logprobs, -1);
  r = parse_completion_request(Endpoint::kCompletions,
                               R"({"model":"m","prompt":[5,6,7],"max_tokens":3,"temperature":0,"top_p":0.5,"top_k":4,
                                   "seed":-1,"stop":["a","b"],"stream":true,"stream_options":{"include_usage":true},
                                   "logprobs":2,"echo":true,"n":1,"anything_else":[1,2]})");
  EXPECT_EQ(r.prompt_ids, (std::vector<int64_t>{5, 6, 7}));
  EXPECT_EQ(*r.max_tokens, 3);
  EXPECT_EQ(r.top_k, 4);
  EXPECT_EQ(*r.seed, static_cast<uint64_t>(-1));
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(r.stream && r.include_usage && r.echo);
  EXPECT_EQ(r.logprobs, 2);
  auto chat = parse_completion_request(Endpoint::kChatCompletions,
                                       R"({"model":"m","messages":[{"role":"developer","content":"be brief"},
                                           {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
                                           "logprobs":true,"top_logprobs":3,"max_completion_tokens":9})");
  ASSERT_EQ(chat.messages.size(), 2u);
  EXPECT_EQ(chat.messages[0].role, "system");
  EXPECT_EQ(chat.messages[1].content, "ab");
  EXPECT_EQ(chat.logprobs, 3);
  EXPECT_EQ(*chat.max_tokens, 9);
  EXPECT_FALSE(parse_completion_request(Endpoint::kChatCompletions, R"({"model":"m","messages":[{"role":"user","content":"x"}]})")
                   .max_tokens.has_value());  // chat: the rest of the context
  // What lm-evaluation-harness sends to score a text: a batch of one token-id prompt, echo,
  // logprobs, and (in older versions) max_tokens 0.
  auto scoring = parse_completion_request(Endpoint::kCompletions,
                                          R"({"model":"m","prompt":[[3,1,4]],"max_tokens":0,"echo":true,"logprobs":1})");
  EXPECT_EQ(scoring.prompt_ids, (std::vector<int64_t>{3, 1, 4}));
  EXPECT_EQ(*scoring.max_tokens, 0);
  EXPECT_TRUE(scoring.echo);
  EXPECT_EQ(scoring.logprobs, 1);
  // Batches of prompts: a choice each.
  auto batch = parse_completion_request(Endpoint::kCompletions, R"({"model":"m","prompt":["ab",[5,6]],"seed":3})");
  ASSERT_EQ(batch.prompts.size(), 2u);
  EXPECT_EQ(*batch.prompts[0].text, "ab");
  EXPECT_EQ(batch.prompts[1].ids, (std::vector<int64_t>{5, 6}));
  ASSERT_EQ(choice_count(batch), 2u);
  const CompletionRequest second = for_choice(batch, 1);
  EXPECT_FALSE(second.prompt_text.has_value());
  EXPECT_EQ(second.prompt_ids, (std::vector<int64_t>{5, 6}));
  EXPECT_EQ(second.prompts.size(), 1u);
  EXPECT_EQ(*second.seed, 3u);
  EXPECT_EQ(second.choice_index, 1u);
  EXPECT_EQ(for_choice(batch, 0).choice_index, 0u);
  // n choices per prompt, numbered prompt by prompt; choice j of a prompt samples with seed + j.
  auto several = parse_completion_request(Endpoint::kCompletions,
                                          R"({"model":"m","prompt":["ab",[5,6]],"seed":3,"n":3,"best_of":3})");
  ASSERT_EQ(choice_count(several), 6u);
  for (size_t c = 0; c < 6; ++c) {
    const CompletionRequest one = for_choice(several, c);
    EXPECT_EQ(one.choice_index, c);
    EXPECT_EQ(*one.seed, 3u + c % 3) << c;
    EXPECT_EQ(one.prompt_text.has_value(), c < 3) << c;
    const std::vector<int64_t> ids = c < 3 ? std::vector<int64_t>{} : std::vector<int64_t>{5, 6};
    EXPECT_EQ(one.prompt_ids, ids) << c;
  }
  EXPECT_THROW(for_choice(several, 6), Error);
  auto unseeded = parse_completion_request(Endpoint::kChatCompletions,
                                           R"({"model":"m","messages":[{"role":"user","content":"x"}],"n":2})");
  ASSERT_EQ(choice_count(unseeded), 2u);
  EXPECT_FALSE(for_choice(unseeded, 1).seed.has_value());  // each choice draws a fresh seed
  EXPECT_EQ(for_choice(unseeded, 1).messages.size(), 1u);
  auto wrapping = parse_completion_request(Endpoint::kCompletions, R"({"model":"m","prompt":"x","seed":-1,"n":2})");
  EXPECT_EQ(*for_choice(wrapping, 1).seed, 0u);  // -1 is 2^64 - 1; one more wraps
  auto penalised = parse_completion_request(Endpoint::kChatCompletions,
                                            R"({"model":"m","messages":[{"role":"user","content":"x"}],
                                                "presence_penalty":0.5,"frequency_penalty":-1,
                                                "logit_bias":{"7":-100,"12":2.5}})");
  EXPECT_EQ(penalised.presence_penalty, 0.5);
  EXPECT_EQ(penalised.frequency_penalty, -1.0);
  EXPECT_EQ(penalised.logit_bias, (std::vector<std::pair<int64_t, double>>{{12, 2.5}, {7, -100.0}}));  // key order
}

TEST(OpenAiProtocol, BadFieldsAreNamed) {
  const Endpoint c = Endpoint::kCompletions;
  expect_refused(c, "not json", "");
  expect_refused(c, "[1,2]", "");
  expect_refused(c, R"({"prompt":"x"})", "model");
  expect_refused(c, R"({"model":"m"})", "prompt");
  expect_refused(c, R"({"model":"m","prompt":""})", "prompt");
  expect_refused(c, R"({"model":"m","prompt":[]})", "prompt");
  expect_refused(c, R"({"model":"m","prompt":["a",""]})", "prompt");
  expect_refused(c, R"({"model":"m","prompt":["a",3]})", "prompt");
  expect_refused(c, R"({"model":"m","prompt":[["a"]]})", "prompt");
  expect_refused(c, R"({"model":"m","prompt":[1,"a"]})", "prompt");
  expect_refused(c, R"({"model":"m","prompt":[1,-2]})", "prompt");
  expect_refused(c, R"({"model":"m","prompt":"x","max_tokens":0})", "max_tokens");  // 0 only with echo
  expect_refused(c, R"({"model":"m","prompt":"x","max_tokens":-1,"echo":true})", "max_tokens");
  expect_refused(c, R"({"model":"m","prompt":[[1,-2]]})", "prompt");
  expect_refused(c, R"({"model":"m","prompt":[[]]})", "prompt");
  expect_refused(c, R"({"model":"m","prompt":"x","max_tokens":1.5})", "max_tokens");
  expect_refused(c, R"({"model":"m","prompt":"x","temperature":2.5})", "temperature");
  expect_refused(c, R"({"model":"m","prompt":"x","temperature":"hot"})", "temperature");
  expect_refused(c, R"({"model":"m","prompt":"x","top_p":0})", "top_p");
  expect_refused(c, R"({"model":"m","prompt":"x","top_p":1e999})", "");  // not valid JSON for nlohmann: an overflow
  expect_refused(c, R"({"model":"m","prompt":"x","n":0})", "n");
  expect_refused(c, R"({"model":"m","prompt":"x","n":129})", "n");
  expect_refused(c, R"({"model":"m","prompt":"x","n":2.5})", "n");
  expect_refused(c, R"({"model":"m","prompt":"x","n":2,"best_of":3})", "best_of");
  expect_refused(c, R"({"model":"m","prompt":"x","best_of":2})", "best_of");
  expect_refused(c, R"({"model":"m","prompt":"x","stop":["1","2","3","4","5"]})", "stop");
  expect_refused(c, R"({"model":"m","prompt":"x","stop":[1]})", "stop");
  expect_refused(c, R"({"model":"m","prompt":"x","stream":"yes"})", "stream");
  expect_refused(c, R"({"model":"m","prompt":"x","logprobs":21})", "logprobs");
  expect_refused(c, R"({"model":"m","prompt":"x","presence_penalty":2.5})", "presence_penalty");
  expect_refused(c, R"({"model":"m","prompt":"x","frequency_penalty":"high"})", "frequency_penalty");
  expect_refused(c, R"({"model":"m","prompt":"x","logit_bias":[1]})", "logit_bias");
  expect_refused(c, R"({"model":"m","prompt":"x","logit_bias":{"a":1}})", "logit_bias");
  expect_refused(c, R"({"model":"m","prompt":"x","logit_bias":{"-3":1}})", "logit_bias");
  expect_refused(c, R"({"model":"m","prompt":"x","logit_bias":{"3":101}})", "logit_bias");
  expect_refused(c, R"({"model":"m","prompt":"x","logit_bias":{"3":1,"03":2}})", "logit_bias");
  const Endpoint chat = Endpoint::kChatCompletions;
  expect_refused(chat, R"({"model":"m","messages":[]})", "messages");
  expect_refused(chat, R"({"model":"m","messages":[{"role":"wizard","content":"x"}]})", "messages[0].role");
  expect_refused(chat, R"({"model":"m","messages":[{"role":"user"}]})", "messages[0].content");
  expect_refused(chat, R"({"model":"m","messages":[{"role":"user","content":"x"}],"top_logprobs":2})", "top_logprobs");
  expect_refused(chat, R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0})", "max_tokens");
  // A string with invalid UTF-8 is refused, and the error itself is valid JSON.
  expect_refused(c, std::string("{\"model\":\"m\",\"prompt\":\"\xC3\x28\"}"), "");
}

TEST(OpenAiProtocol, PrintableUtf8KeepsWellFormedTextAndReplacesTheRest) {
  EXPECT_EQ(printable_utf8("plain ascii"), "plain ascii");
  EXPECT_EQ(printable_utf8("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"), "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");  // é € 😀
  const std::string bad[] = {"\xC3", "\xC0\x80", "\xE0\x80\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xFF", "\x80"};
  for (const std::string& b : bad) {
    const std::string out = printable_utf8("a" + b + "z");
    EXPECT_EQ(out.front(), 'a');
    EXPECT_EQ(out.back(), 'z');
    EXPECT_NE(out.find("\xEF\xBF\xBD"), std::string::npos);
    EXPECT_NO_THROW((void)nlohmann::json(out).dump()) << "not valid UTF-8 after cleaning";
  }
}

}  // namespace
}  // namespace nextn::server
