// The body of a POST /v1/completions or /v1/chat/completions request (first byte: which): any
// body is answered with a request or an ApiError (400, OpenAI's error format), nothing else.
#include "fuzz_support.h"
#include "nextn/server/openai_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const auto endpoint = (data[0] & 1) ? nextn::server::Endpoint::kChatCompletions : nextn::server::Endpoint::kCompletions;
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    const auto request = nextn::server::parse_completion_request(endpoint, body);
    if (request.top_p <= 0 || request.top_p > 1 || !(request.temperature >= 0)) std::abort();
  } catch (const nextn::server::ApiError& e) {
    if (e.status() < 400 || e.status() >= 500) std::abort();
    (void)e.to_json().dump();  // the error body is valid JSON whatever the input held
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: %s escaped the request parser: %s\n", typeid(e).name(), e.what());
    std::abort();
  }
  return 0;
}
