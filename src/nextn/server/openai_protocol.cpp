#include "nextn/server/openai_protocol.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <random>
#include <set>

#include "nextn/tokenizer/unicode.h"
#include "nextn/util/error.h"

namespace nextn::server {
namespace {

using json = nlohmann::json;

const char* type_for(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429:
    case 503: return "server_overloaded";
    case 500: return "server_error";
    default: return "invalid_request_error";
  }
}

[[noreturn]] void bad(const std::string& param, const std::string& message) {
  throw ApiError(400, message, param, "invalid_value");
}

double number_in(const json& body, const char* field, double low, double high, double fallback) {
  if (!body.contains(field) || body[field].is_null()) return fallback;
  const json& v = body[field];
  if (!v.is_number()) bad(field, std::string("'") + field + "' must be a number, got " + v.type_name());
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < low || x > high) {
    bad(field, std::string("'") + field + "' must be in [" + json(low).dump() + ", " + json(high).dump() + "], got " +
                   v.dump());
  }
  return x;
}

std::optional<int64_t> integer_in(const json& body, const char* field, int64_t low, int64_t high) {
  if (!body.contains(field) || body[field].is_null()) return std::nullopt;
  const json& v = body[field];
  if (!v.is_number_integer()) bad(field, std::string("'") + field + "' must be an integer, got " + v.dump());
  const int64_t x = v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)
                        ? INT64_MAX
                        : v.get<int64_t>();
  if (x < low || x > high) {
    bad(field, std::string("'") + field + "' must be in [" + std::to_string(low) + ", " + std::to_string(high) +
                   "], got " + v.dump());
  }
  return x;
}

bool boolean(const json& body, const char* field, bool fallback) {
  if (!body.contains(field) || body[field].is_null()) return fallback;
  if (!body[field].is_boolean()) bad(field, std::string("'") + field + "' must be true or false, got " + body[field].dump());
  return body[field].get<bool>();
}

// One prompt: a string, or an array of token ids; `where` names it in errors.
PromptInput parse_one_prompt(const json& p, const std::string& where) {
  PromptInput prompt;
  if (p.is_string()) {
    if (p.get<std::string>().empty()) bad("prompt", where + " is empty");
    prompt.text = p.get<std::string>();
    return prompt;
  }
  if (!p.is_array()) bad("prompt", where + " must be a string or an array of token ids, got " + p.type_name());
  if (p.empty()) bad("prompt", where + " is empty");
  for (const json& id : p) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0) {
      bad("prompt", where + ": a token-id prompt must hold non-negative integers, got " + id.dump());
    }
    prompt.ids.push_back(id.get<int64_t>());
  }
  return prompt;
}

// OpenAI's four forms: a string, an array of token ids, and batches of either (an array of
// strings, an array of token-id arrays; lm-evaluation-harness sends its requests so).
void parse_prompt(const json& body, CompletionRequest& r) {
  if (!body.contains("prompt") || body["prompt"].is_null()) bad("prompt", "'prompt' is required");
  const json& p = body["prompt"];
  if (p.is_array() && !p.empty() && (p[0].is_string() || p[0].is_array())) {
    for (size_t i = 0; i < p.size(); ++i) {
      if (!p[i].is_string() && !p[i].is_array()) {
        bad("prompt", "prompt[" + std::to_string(i) + "] must be a string or an array of token ids, got " +
                          p[i].type_name());
      }
      r.prompts.push_back(parse_one_prompt(p[i], "prompt[" + std::to_string(i) + "]"));
    }
  } else {
    r.prompts.push_back(parse_one_prompt(p, "'prompt'"));
  }
  r.prompt_text = r.prompts.front().text;
  r.prompt_ids = r.prompts.front().ids;
}

// OpenAI's logit_bias: {"<token id>": bias in [-100, 100], ...}.
void parse_logit_bias(const json& body, CompletionRequest& r) {
  if (!body.contains("logit_bias") || body["logit_bias"].is_null()) return;
  const json& biases = body["logit_bias"];
  if (!biases.is_object()) bad("logit_bias", "'logit_bias' must be an object mapping token ids to biases");
  std::set<int64_t> seen;
  for (auto it = biases.begin(); it != biases.end(); ++it) {
    const std::string& key = it.key();
    const bool digits = !key.empty() && key.size() <= 18 &&
                        std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits) bad("logit_bias", "'logit_bias' keys must be token ids, got \"" + printable_utf8(key) + "\"");
    const int64_t id = std::stoll(key);
    if (!seen.insert(id).second) bad("logit_bias", "'logit_bias' names token " + std::to_string(id) + " twice");
    const json& value = it.value();
    if (!value.is_number() || !std::isfinite(value.get<double>()) || value.get<double>() < -100.0 ||
        value.get<double>() > 100.0) {
      bad("logit_bias", "'logit_bias' of token " + key + " must be a number in [-100, 100], got " + value.dump());
    }
    r.logit_bias.emplace_back(id, value.get<double>());
  }
}

void parse_messages(const json& body, CompletionRequest& r) {
  if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty()) {
    bad("messages", "'messages' must be a non-empty array");
  }
  for (size_t i = 0; i < body["messages"].size(); ++i) {
    const json& m = body["messages"][i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) bad(where, where + " must be an object");
    if (!m.contains("role") || !m["role"].is_string()) bad(where + ".role", where + ".role must be a string");
    const std::string role = m["role"];
    if (role != "system" && role != "user" && role != "assistant" && role != "developer") {
      bad(where + ".role", where + ".role must be system, developer, user or assistant, got '" + role + "'");
    }
    std::string content;
    if (m.contains("content") && m["content"].is_string()) {
      content = m["content"];
    } else if (m.contains("content") && m["content"].is_array()) {  // [{"type": "text", "text": ...}]
      for (const json& part : m["content"]) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string()) {
          bad(where + ".content", where + ".content parts must be {\"type\": \"text\", \"text\": ...}");
        }
        content += part["text"].get<std::string>();
      }
    } else {
      bad(where + ".content", where + ".content must be a string or an array of text parts");
    }
    r.messages.push_back({role == "developer" ? "system" : role, content});
  }
}

void parse_stop(const json& body, CompletionRequest& r) {
  if (!body.contains("stop") || body["stop"].is_null()) return;
  const json& s = body["stop"];
  if (s.is_string()) {
    if (!s.get<std::string>().empty()) r.stop.push_back(s);
    return;
  }
  if (!s.is_array()) bad("stop", "'stop' must be a string or an array of strings");
  if (s.size() > 4) bad("stop", "'stop' holds at most 4 strings, got " + std::to_string(s.size()));
  for (const json& one : s) {
    if (!one.is_string()) bad("stop", "'stop' must hold strings, got " + one.dump());
    if (!one.get<std::string>().empty()) r.stop.push_back(one);
  }
}

}  // namespace

ApiError::ApiError(int status, std::string message, std::string param, std::string code, std::string type)
    : std::runtime_error(std::move(message)), status_(status), type_(type.empty() ? type_for(status) : std::move(type)),
      param_(std::move(param)), code_(std::move(code)) {}

nlohmann::json ApiError::to_json() const {
  auto nullable = [](const std::string& s) { return s.empty() ? json(nullptr) : json(printable_utf8(s)); };
  return {{"error",
           {{"message", printable_utf8(what())}, {"type", type_}, {"param", nullable(param_)}, {"code", nullable(code_)}}}};
}

std::string printable_utf8(const std::string& text) {
  // Well-formed sequences only (what JSON encoders such as nlohmann::json accept); each maximal
  // invalid subsequence becomes one U+FFFD, as Python's and Hugging Face's decoding do.
  return tokenizer::to_valid_utf8_lossy(text);
}

CompletionRequest parse_completion_request(Endpoint endpoint, const std::string& text) {
  json body;
  try {
    body = json::parse(text);
  } catch (const json::exception& e) {  // parse errors, and numbers out of range ("1e999")
    throw ApiError(400, std::string("the request body is not valid JSON: ") + e.what(), "", "invalid_json");
  }
  if (!body.is_object()) throw ApiError(400, "the request body must be a JSON object", "", "invalid_json");
  try {
    (void)body.dump();  // nlohmann::json parses strings with invalid UTF-8; dump() finds them
  } catch (const json::type_error&) {
    throw ApiError(400, "the request body holds a string that is not valid UTF-8", "", "invalid_json");
  }
  CompletionRequest r;
  r.endpoint = endpoint;
  if (!body.contains("model") || !body["model"].is_string()) bad("model", "'model' is required and must be a string");
  r.model = body["model"];
  if (endpoint == Endpoint::kCompletions) {
    parse_prompt(body, r);
  } else {
    parse_messages(body, r);
  }
  const char* max_field = body.contains("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  r.max_tokens = integer_in(body, max_field, 0, INT64_MAX);
  if (endpoint == Endpoint::kCompletions && !r.max_tokens) r.max_tokens = 16;  // OpenAI's default
  r.temperature = number_in(body, "temperature", 0.0, 2.0, 1.0);
  r.top_p = number_in(body, "top_p", 0.0, 1.0, 1.0);
  if (r.top_p == 0.0) bad("top_p", "'top_p' must be greater than 0");
  r.top_k = integer_in(body, "top_k", -1, INT64_MAX).value_or(0);
  if (r.top_k < 0) r.top_k = 0;  // vLLM's -1: off
  if (auto seed = integer_in(body, "seed", INT64_MIN, INT64_MAX)) r.seed = static_cast<uint64_t>(*seed);
  r.presence_penalty = number_in(body, "presence_penalty", -2.0, 2.0, 0.0);
  r.frequency_penalty = number_in(body, "frequency_penalty", -2.0, 2.0, 0.0);
  parse_logit_bias(body, r);
  r.n = integer_in(body, "n", 1, kMaxChoicesPerPrompt).value_or(1);
  // best_of (completions: sample that many, return the n likeliest) is not implemented; the value
  // that asks for nothing beyond n is accepted.
  if (auto best_of = integer_in(body, "best_of", 1, INT64_MAX); best_of && *best_of != r.n) {
    throw ApiError(400, "best_of other than n is not supported (got best_of " + std::to_string(*best_of) + ", n " +
                            std::to_string(r.n) + "): ask for n choices and rank them by their logprobs",
                   "best_of", "unsupported_value");
  }
  parse_stop(body, r);
  r.stream = boolean(body, "stream", false);
  if (body.contains("stream_options") && !body["stream_options"].is_null()) {
    if (!body["stream_options"].is_object()) bad("stream_options", "'stream_options' must be an object");
    r.include_usage = boolean(body["stream_options"], "include_usage", false);
  }
  if (endpoint == Endpoint::kCompletions) {
    if (auto k = integer_in(body, "logprobs", 0, 20)) r.logprobs = *k;
    r.echo = boolean(body, "echo", false);
  } else if (boolean(body, "logprobs", false)) {
    r.logprobs = integer_in(body, "top_logprobs", 0, 20).value_or(0);
  } else if (body.contains("top_logprobs") && !body["top_logprobs"].is_null()) {
    bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  }
  // No tokens to generate: only the echoed prompt (scored with logprobs, as evaluation harnesses ask).
  if (r.max_tokens == 0 && !r.echo) {
    bad(max_field, std::string("'") + max_field + "' must be at least 1" +
                       (endpoint == Endpoint::kCompletions ? " (0 only with 'echo': the prompt alone)" : ""));
  }
  r.return_token_ids = boolean(body, "return_token_ids", false);
  r.ignore_eos = boolean(body, "ignore_eos", false);
  return r;
}

size_t choice_count(const CompletionRequest& request) {
  return std::max<size_t>(request.prompts.size(), 1) * static_cast<size_t>(request.n);
}

CompletionRequest for_choice(const CompletionRequest& request, size_t c) {
  NEXTN_CHECK(c < choice_count(request), "choice ", c, " of a request with ", choice_count(request));
  const size_t per_prompt = static_cast<size_t>(request.n), i = c / per_prompt;
  CompletionRequest one = request;
  if (!request.prompts.empty()) {
    one.prompts = {request.prompts[i]};
    one.prompt_text = request.prompts[i].text;
    one.prompt_ids = request.prompts[i].ids;
  }
  one.choice_index = c;
  if (request.seed) one.seed = *request.seed + (c % per_prompt);  // wraps modulo 2^64 as seeds do
  return one;
}

size_t utf8_characters(const std::string& text) {
  const std::string printable = printable_utf8(text);
  // Every character has one byte that is not a continuation byte (10xxxxxx).
  return static_cast<size_t>(std::count_if(printable.begin(), printable.end(),
                                           [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

namespace {

// splitmix64's finaliser (Steele, Lea, Flood 2014): a bijection on 64 bits, so distinct inputs
// give distinct, well-mixed outputs.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// A value no earlier call of this process returned, and unlike another process's: a counter
// offset by 64 random bits drawn once, mixed.
uint64_t fresh_unique_value() {
  static const uint64_t salt = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  static std::atomic<uint64_t> counter{0};
  return mix64(salt + counter.fetch_add(1));
}

}  // namespace

std::string new_response_id(Endpoint endpoint) {
  char buffer[40];
  std::snprintf(buffer, sizeof buffer, "%s-%016llx", endpoint == Endpoint::kCompletions ? "cmpl" : "chatcmpl",
                static_cast<unsigned long long>(fresh_unique_value()));
  return buffer;
}

uint64_t fresh_request_seed() { return fresh_unique_value(); }

std::string sse_event(const nlohmann::json& body) { return "data: " + body.dump() + "\n\n"; }

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace nextn::server
