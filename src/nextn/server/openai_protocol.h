// The OpenAI API's request and response bodies, as nextn serves them (/v1/completions,
// /v1/chat/completions): parsing with every field checked (type, range, NaN) and errors in the
// OpenAI format; unknown fields are ignored, as OpenAI does. No HTTP and no model here.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace nextn::server {

// An error the client gets back: {"error": {"message", "type", "param", "code"}} with `status`.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = "", std::string code = "",
           std::string type = "");
  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  nlohmann::json to_json() const;

 private:
  int status_;
  std::string type_, param_, code_;
};

enum class Endpoint { kCompletions, kChatCompletions };

struct ChatMessage {
  std::string role;  // system, user, assistant
  std::string content;
};

// A completion's prompt: text, or token ids.
struct PromptInput {
  std::optional<std::string> text;
  std::vector<int64_t> ids;
};

struct CompletionRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;
  std::optional<std::string> prompt_text;  // completions: a string prompt
  std::vector<int64_t> prompt_ids;         // completions: an array of token ids
  // Completions: every prompt of the request, n choices each (OpenAI's prompt arrays); the first
  // is also in prompt_text / prompt_ids. for_choice(request, c) is the request for one choice alone.
  std::vector<PromptInput> prompts;
  int64_t n = 1;            // choices per prompt (OpenAI's n)
  size_t choice_index = 0;  // the choice this request's output is (for_choice(request, c): c)
  std::vector<ChatMessage> messages;       // chat
  std::optional<int64_t> max_tokens;       // absent: 16 (completions), the rest of the context (chat)
  double temperature = 1.0;
  double top_p = 1.0;
  int64_t top_k = 0;  // extension (0: off)
  std::optional<uint64_t> seed;
  double presence_penalty = 0.0;   // OpenAI's, in [-2, 2] (inference/sampling.h)
  double frequency_penalty = 0.0;  // in [-2, 2]
  std::vector<std::pair<int64_t, double>> logit_bias;  // token id -> bias in [-100, 100]
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  int64_t logprobs = -1;       // -1: none; completions: logprobs = k; chat: logprobs + top_logprobs = k
  bool echo = false;  // completions: the prompt goes first in the text (and with logprobs is scored)
  bool return_token_ids = false;  // extension: each choice's generated token ids
  bool ignore_eos = false;        // extension (as vLLM's): generate past the end-of-document token
};

// OpenAI's most choices per prompt.
constexpr int64_t kMaxChoicesPerPrompt = 128;

// Throws ApiError (400) naming the field for anything malformed: not JSON, wrong types, values out
// of range or NaN, n outside [1, 128], empty prompts, more than 4 stop strings.
CompletionRequest parse_completion_request(Endpoint endpoint, const std::string& body);

// The choices of a request: n per prompt (a chat has one prompt), each its own engine request.
size_t choice_count(const CompletionRequest& request);
// The request for choice c alone: prompt c / n, choice_index c (OpenAI numbers a batch's choices
// prompt by prompt; n stays the whole request's). With a seed S, choice c samples with S + (c mod n): the choices of one
// prompt differ, and each is what n = 1 with its seed gives.
CompletionRequest for_choice(const CompletionRequest& request, size_t c);

// One token of the response with its log-probabilities: a generated one, or with echo a prompt's.
struct TokenLogprob {
  std::string token;  // its text
  // Where its text starts in the response's text, in characters (code points, as OpenAI's
  // text_offset counts): a token that only completes a character started before starts there.
  size_t text_offset = 0;
  std::optional<double> logprob;  // none for a prompt's first token (nothing precedes it): null
  std::vector<std::pair<std::string, double>> top;
};

// `text` with every byte that does not belong to a valid UTF-8 character replaced by U+FFFD, so
// that it can go into JSON (a token may end inside a character; an error may quote bad input).
std::string printable_utf8(const std::string& text);
// Characters (code points) of printable_utf8(text).
size_t utf8_characters(const std::string& text);

// One Server-Sent Event of a stream: "data: <json>" and the blank line that ends it.
std::string sse_event(const nlohmann::json& body);

// Identifiers and timestamps of responses.
std::string new_response_id(Endpoint endpoint);  // "cmpl-..." / "chatcmpl-...", unique in the process
// The sampling seed of a request that gives none: a fresh one each time, as OpenAI's API samples
// anew on every call without `seed` (a request with one is reproducible).
uint64_t fresh_request_seed();
int64_t unix_time();

}  // namespace nextn::server
