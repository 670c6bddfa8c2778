// One completion request between the HTTP thread that received it and the engine that runs it:
// renders and tokenizes the prompt, turns the engine's tokens into text (whole UTF-8 characters,
// stop strings held back and cut, the stop token's text left out), keeps the log-probabilities,
// and builds the OpenAI response bodies, whole or as stream chunks. The engine's callbacks fill a
// small queue under a mutex; the HTTP thread takes from it. A stream whose socket is known writes
// each token's chunk from the engine thread instead (stream_to), so the HTTP thread sleeps until
// the request ends.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "nextn/inference/stop_strings.h"
#include "nextn/server/chat_template.h"
#include "nextn/server/chunked_socket_writer.h"
#include "nextn/server/engine.h"
#include "nextn/server/metrics.h"
#include "nextn/server/openai_protocol.h"
#include "nextn/tokenizer/tokenizer.h"

namespace nextn::server {

struct ServedModel {
  std::string name;  // what clients pass as "model"
  const tokenizer::Tokenizer* tokenizer = nullptr;
  ChatFormat chat_format = ChatFormat::kPlain;  // choose_chat_format's
  int64_t context_length = 0;
  int64_t vocab_size = 0;
};

// The token ids a request feeds the model: a token-id prompt as given (ApiError 400 for an id
// outside the vocabulary), a text prompt after the EOS that starts a document, chat messages in the
// model's chat format (chat_template.h).
std::vector<int64_t> request_prompt_ids(const CompletionRequest& request, const ServedModel& model);

class CompletionSession : public std::enable_shared_from_this<CompletionSession> {
 public:
  // Tokenizes and checks the request against the model: ApiError (400) for a prompt that is
  // empty, holds ids outside the vocabulary, or leaves no room in the context for max_tokens.
  // A text prompt starts a document: EOS goes before it, as `nextn generate` does.
  // `prompt_ids`: request_prompt_ids(request, model) when the caller has them (a prompt's n
  // choices are tokenized once), else computed here.
  CompletionSession(const CompletionRequest& request, const ServedModel& model, Metrics* metrics,
                    const std::vector<int64_t>* prompt_ids = nullptr);

  // The request for the engine (the session must be owned by a shared_ptr). Its callbacks hold the
  // session, the session only a weak reference to it, so whichever side is done first may go.
  std::shared_ptr<EngineRequest> make_engine_request();

  // New output since the last call: text, and the tokens' log-probabilities and ids.
  struct Delta {
    std::string text;
    std::vector<TokenLogprob> logprobs;
    std::vector<int64_t> token_ids;
  };
  // Waits up to `wait` for output or the end (streams), or for the end only (wait_done).
  bool wait(std::chrono::milliseconds wait);
  // A stream's chunks from now on go out from the engine thread as each token comes, through
  // `writer` (after what was produced so far); stop_streaming() ends that, after which the engine
  // never touches the writer. Both from the request's thread; a failed write cancels the request.
  void stream_to(std::shared_ptr<ChunkedSocketWriter> writer);
  void stop_streaming();
  bool wait_done(std::chrono::milliseconds wait);
  Delta take();
  bool finished() const;  // the end came and every delta was taken (streams)
  bool done() const;      // the end came (whole responses, which take nothing)
  FinishReason finish_reason() const;
  const RequestStats& stats() const;
  void cancel();  // the client went away

  // Response bodies. finish_reason_text(): "stop" or "length".
  nlohmann::json response() const;                 // the whole response (non-streaming)
  nlohmann::json chunk(const Delta& delta) const;  // a stream chunk with this delta
  bool worth_a_chunk(const Delta& delta) const;    // text, or log-probabilities or ids asked for
  nlohmann::json role_chunk() const;               // chat streams: the first chunk, {"role": "assistant"}
  nlohmann::json final_chunk() const;              // the chunk with finish_reason
  nlohmann::json usage_chunk() const;              // stream_options.include_usage: choices [] and usage
  nlohmann::json usage() const;                    // the usage object (tokens, and drafts per depth)
  std::string echo_text() const;                   // completions with echo: the prompt's text
  // Completions with echo and logprobs: the prompt's tokens come first in the log-probabilities,
  // and a stream's echo chunk (with them) comes from the engine, after the prefill.
  bool scores_prompt() const { return request_.echo && request_.logprobs >= 0; }

  // A batch of prompts is one response: every choice's session answers with the first's id and time.
  void answer_as(const CompletionSession& first) {
    id_ = first.id_;
    created_ = first.created_;
  }

  const CompletionRequest& request() const { return request_; }
  int64_t prompt_tokens() const { return static_cast<int64_t>(prompt_.size()); }
  const std::vector<int64_t>& prompt() const { return prompt_; }  // the ids fed to the model

 private:
  void on_prompt(const std::vector<TokenEvent>& scored);  // engine thread, before any token
  void on_token(const TokenEvent& event);                  // engine thread
  void on_finish(FinishReason reason, const RequestStats& stats);
  nlohmann::json logprobs_json(const std::vector<TokenLogprob>& entries) const;
  std::string finish_reason_text() const;

  CompletionRequest request_;
  ServedModel model_;
  Metrics* metrics_;
  std::string id_;
  int64_t created_;
  std::vector<int64_t> prompt_;
  std::vector<int64_t> stop_token_ids_;
  std::weak_ptr<EngineRequest> engine_request_;
  int64_t max_tokens_ = 0;
  std::chrono::steady_clock::time_point arrived_, last_token_at_;
  int64_t tokens_seen_ = 0;

  // Engine side: decoding state (only the engine thread touches it).
  std::optional<tokenizer::StreamDecoder> decoder_;
  std::optional<inference::StopStringFilter> filter_;
  size_t decoded_characters_ = 0;  // the decoder's output so far, in characters

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  Delta pending_;                   // produced, not yet taken
  std::string text_;                // everything produced (for the whole response)
  size_t echo_characters_ = 0;      // the echoed prompt's characters (text offsets start after them)
  std::vector<TokenLogprob> logprobs_;
  std::vector<int64_t> token_ids_;
  bool finished_ = false;
  FinishReason reason_ = FinishReason::kError;
  RequestStats stats_;
  std::shared_ptr<ChunkedSocketWriter> writer_;  // set: the engine thread writes the stream's chunks
};

}  // namespace nextn::server
