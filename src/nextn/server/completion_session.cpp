#include "nextn/server/completion_session.h"

#include <algorithm>

#include "nextn/server/chat_template.h"

namespace nextn::server {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string token_text(const tokenizer::Tokenizer& tok, int64_t id) {
  if (id < 0 || id >= tok.vocab_size()) return "";
  return tok.decode({static_cast<int32_t>(id)});
}

// A scored token's response entry: its text, log-probability and most likely tokens, at `offset`.
TokenLogprob logprob_entry(const tokenizer::Tokenizer& tok, const TokenEvent& event, size_t offset) {
  TokenLogprob entry;
  entry.token = token_text(tok, event.token);
  entry.text_offset = offset;
  entry.logprob = event.logprob;
  for (const auto& [id, logprob] : event.top) entry.top.push_back({token_text(tok, id), logprob});
  return entry;
}

json bytes_of(const std::string& text) {
  json bytes = json::array();
  for (unsigned char c : text) bytes.push_back(static_cast<int>(c));
  return bytes;
}

}  // namespace

std::vector<int64_t> request_prompt_ids(const CompletionRequest& request, const ServedModel& model) {
  if (request.endpoint == Endpoint::kChatCompletions) {
    return chat_prompt_ids(model.chat_format, request.messages, *model.tokenizer);
  }
  if (!request.prompt_ids.empty()) {
    for (int64_t id : request.prompt_ids) {
      if (id >= model.vocab_size) {
        throw ApiError(400, "prompt token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                std::to_string(model.vocab_size) + ")", "prompt", "invalid_value");
      }
    }
    return request.prompt_ids;
  }
  std::vector<int64_t> ids = {model.tokenizer->eos_id()};  // a text prompt starts a document
  for (int32_t id : model.tokenizer->encode(*request.prompt_text)) ids.push_back(id);
  return ids;
}

CompletionSession::CompletionSession(const CompletionRequest& request, const ServedModel& model, Metrics* metrics,
                                     const std::vector<int64_t>* prompt_ids)
    : request_(request), model_(model), metrics_(metrics), id_(new_response_id(request.endpoint)),
      created_(unix_time()), arrived_(Clock::now()) {
  const tokenizer::Tokenizer& tok = *model_.tokenizer;
  std::vector<std::string> stops = request_.stop;
  if (request_.endpoint == Endpoint::kChatCompletions) {
    for (const std::string& s : chat_stop_strings(model_.chat_format)) stops.push_back(s);
  }
  prompt_ = prompt_ids != nullptr ? *prompt_ids : request_prompt_ids(request_, model_);
  const int64_t length = prompt_tokens();
  if (length >= model_.context_length) {
    throw ApiError(400, "the prompt has " + std::to_string(length) + " tokens, more than the model's context of " +
                            std::to_string(model_.context_length) + " tokens leaves room for",
                   request_.endpoint == Endpoint::kChatCompletions ? "messages" : "prompt", "context_length_exceeded");
  }
  const int64_t room = model_.context_length - length;
  const int64_t max_tokens = request_.max_tokens.value_or(room);
  if (max_tokens > room) {
    throw ApiError(400, "max_tokens " + std::to_string(max_tokens) + " and the prompt's " + std::to_string(length) +
                            " tokens exceed the model's context of " + std::to_string(model_.context_length) +
                            " tokens (at most " + std::to_string(room) + " here)",
                   "max_tokens", "context_length_exceeded");
  }
  for (const auto& [id, bias] : request_.logit_bias) {
    if (id >= model_.vocab_size) {
      throw ApiError(400, "logit_bias names token " + std::to_string(id) + ", outside the vocabulary [0, " +
                              std::to_string(model_.vocab_size) + ")", "logit_bias", "invalid_value");
    }
  }
  if (!request_.ignore_eos) stop_token_ids_ = {tok.eos_id()};
  decoder_.emplace(tok);
  filter_.emplace(stops);

  max_tokens_ = max_tokens;
  echo_characters_ = utf8_characters(echo_text());  // text offsets count from the response text's start
}

std::shared_ptr<EngineRequest> CompletionSession::make_engine_request() {
  auto r = std::make_shared<EngineRequest>();
  r->prompt = prompt_;
  r->max_tokens = max_tokens_;
  r->sampling.temperature = request_.temperature;
  r->sampling.top_p = request_.top_p;
  r->sampling.top_k = request_.top_k;
  r->sampling.seed = request_.seed ? *request_.seed : fresh_request_seed();
  r->sampling.presence_penalty = request_.presence_penalty;
  r->sampling.frequency_penalty = request_.frequency_penalty;
  r->sampling.logit_bias = request_.logit_bias;
  r->stop_token_ids = stop_token_ids_;
  r->logprobs = request_.logprobs;
  auto self = shared_from_this();
  if (scores_prompt()) {
    r->prompt_logprobs = request_.logprobs;
    r->on_prompt = [self](const std::vector<TokenEvent>& scored) { self->on_prompt(scored); };
  }
  r->on_token = [self](const TokenEvent& event) {
    self->on_token(event);
    return !self->filter_->stopped();
  };
  r->on_finish = [self](FinishReason reason, const RequestStats& stats) { self->on_finish(reason, stats); };
  engine_request_ = r;
  return r;
}

void CompletionSession::on_prompt(const std::vector<TokenEvent>& scored) {
  // scored[i] is prompt_[i + 1]'s. A text prompt's first token is the EOS put before it (a
  // document starts), not part of the echoed text: every token of the text has a log-probability.
  // A token-id prompt's first token is shown without one (null, as OpenAI's: nothing precedes it).
  const tokenizer::Tokenizer& tok = *model_.tokenizer;
  tokenizer::StreamDecoder decoder(tok);
  size_t characters = 0;  // of the echoed text before the token
  std::vector<TokenLogprob> entries;
  auto add = [&](const TokenEvent& event, bool scored_token) {
    TokenLogprob entry = logprob_entry(tok, event, characters);
    if (!scored_token) entry.logprob.reset();
    if (event.token < tok.vocab_size()) characters += utf8_characters(decoder.push(static_cast<int32_t>(event.token)));
    entries.push_back(std::move(entry));
  };
  if (!request_.prompt_ids.empty()) add(TokenEvent{prompt_.front(), 0.0, {}}, false);
  for (const TokenEvent& event : scored) add(event, true);
  std::lock_guard<std::mutex> lock(mutex_);
  logprobs_.insert(logprobs_.begin(), entries.begin(), entries.end());
  Delta delta;
  delta.text = echo_text();
  delta.logprobs = std::move(entries);
  if (writer_) {
    if (!writer_->write(sse_event(chunk(delta)))) cancel();
    return;
  }
  pending_.text += delta.text;
  pending_.logprobs.insert(pending_.logprobs.end(), delta.logprobs.begin(), delta.logprobs.end());
  changed_.notify_all();
}

void CompletionSession::on_token(const TokenEvent& event) {
  const auto now = Clock::now();
  if (metrics_ != nullptr) {
    if (tokens_seen_ == 0) {
      metrics_->time_to_first_token(std::chrono::duration<double>(now - arrived_).count());
    } else {
      metrics_->inter_token_latency(std::chrono::duration<double>(now - last_token_at_).count());
    }
  }
  last_token_at_ = now;
  ++tokens_seen_;
  const bool stop_token =
      std::find(stop_token_ids_.begin(), stop_token_ids_.end(), event.token) != stop_token_ids_.end();
  std::string text;
  // Where this token's text starts: counted on the decoder's output, before the stop-string filter
  // (which holds back an ending that might become a stop string and releases it with later text).
  const size_t text_offset = echo_characters_ + decoded_characters_;
  if (!stop_token && !filter_->stopped()) {
    bool stopped = false;
    const std::string piece = event.token < model_.tokenizer->vocab_size()
                                  ? decoder_->push(static_cast<int32_t>(event.token))
                                  : std::string();
    decoded_characters_ += utf8_characters(piece);  // engine thread only
    text = filter_->push(piece, stopped);
  }
  TokenLogprob entry;
  if (request_.logprobs >= 0) entry = logprob_entry(*model_.tokenizer, event, text_offset);
  std::lock_guard<std::mutex> lock(mutex_);
  text_ += text;
  token_ids_.push_back(event.token);
  if (request_.logprobs >= 0) logprobs_.push_back(entry);
  if (writer_) {
    Delta delta;
    delta.text = std::move(text);
    delta.token_ids = {event.token};
    if (request_.logprobs >= 0) delta.logprobs = {std::move(entry)};
    if (worth_a_chunk(delta) && !writer_->write(sse_event(chunk(delta)))) cancel();
    return;
  }
  pending_.text += text;
  pending_.token_ids.push_back(event.token);
  if (request_.logprobs >= 0) pending_.logprobs.push_back(entry);
  changed_.notify_all();
}

void CompletionSession::stream_to(std::shared_ptr<ChunkedSocketWriter> writer) {
  std::lock_guard<std::mutex> lock(mutex_);
  // What came before goes first; at the end the request thread sends the tail itself.
  if (!finished_) {
    Delta earlier = std::move(pending_);
    pending_ = Delta{};
    if (worth_a_chunk(earlier) && !writer->write(sse_event(chunk(earlier)))) cancel();
  }
  writer_ = std::move(writer);
  if (finished_) writer_->wake();  // it ended before: the request thread sends the rest itself
}

void CompletionSession::stop_streaming() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (writer_) writer_->close();
  writer_.reset();
}

bool CompletionSession::worth_a_chunk(const Delta& delta) const {
  return !delta.text.empty() || (request_.logprobs >= 0 && !delta.logprobs.empty()) ||
         (request_.return_token_ids && !delta.token_ids.empty());
}

void CompletionSession::on_finish(FinishReason reason, const RequestStats& stats) {
  std::string tail;
  if (!filter_->stopped()) {
    bool stopped = false;
    tail = filter_->push(decoder_->flush(), stopped);
    if (!stopped) tail += filter_->flush();
  }
  if (filter_->stopped() && reason != FinishReason::kCancelled && reason != FinishReason::kError) {
    reason = FinishReason::kStoppedByCaller;
  }
  if (metrics_ != nullptr) {
    if (reason == FinishReason::kCancelled) metrics_->cancelled();
    metrics_->tokens(stats.prompt_tokens, stats.completion_tokens, stats.cached_prompt_tokens);
    if (stats.speculative) metrics_->speculative(stats.drafted_per_depth, stats.accepted_per_depth);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  pending_.text += tail;
  text_ += tail;
  finished_ = true;
  reason_ = reason;
  stats_ = stats;
  changed_.notify_all();
  if (writer_) writer_->wake();
}

bool CompletionSession::wait(std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mutex_);
  return changed_.wait_for(lock, wait, [&] {
    return finished_ || !pending_.text.empty() || !pending_.token_ids.empty();
  });
}

bool CompletionSession::wait_done(std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mutex_);
  return changed_.wait_for(lock, wait, [&] { return finished_; });
}

CompletionSession::Delta CompletionSession::take() {
  std::lock_guard<std::mutex> lock(mutex_);
  Delta out = std::move(pending_);
  pending_ = Delta{};
  return out;
}

bool CompletionSession::finished() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return finished_ && pending_.text.empty() && pending_.token_ids.empty();
}

bool CompletionSession::done() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return finished_;
}

FinishReason CompletionSession::finish_reason() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return reason_;
}

const RequestStats& CompletionSession::stats() const { return stats_; }

void CompletionSession::cancel() {
  if (auto r = engine_request_.lock()) r->cancelled = true;
}

std::string CompletionSession::finish_reason_text() const {
  return reason_ == FinishReason::kLength ? "length" : "stop";
}

json CompletionSession::usage() const {
  json u = {{"prompt_tokens", stats_.prompt_tokens},
            {"completion_tokens", stats_.completion_tokens},
            {"total_tokens", stats_.prompt_tokens + stats_.completion_tokens},
            // OpenAI's field for prompt caching: the tokens the prefix cache gave.
            {"prompt_tokens_details", {{"cached_tokens", stats_.cached_prompt_tokens}}}};
  // Extension: this request's MTP drafting, per depth (empty lists for plain decoding).
  u["speculative"] = {{"drafted", stats_.drafted_per_depth}, {"accepted", stats_.accepted_per_depth}};
  return u;
}

json CompletionSession::logprobs_json(const std::vector<TokenLogprob>& entries) const {
  if (request_.logprobs < 0) return nullptr;
  if (request_.endpoint == Endpoint::kChatCompletions) {
    json content = json::array();
    for (const TokenLogprob& e : entries) {
      json top = json::array();
      for (const auto& [token, logprob] : e.top) {
        top.push_back({{"token", printable_utf8(token)}, {"logprob", logprob}, {"bytes", bytes_of(token)}});
      }
      content.push_back({{"token", printable_utf8(e.token)}, {"logprob", e.logprob.value_or(0)}, {"bytes", bytes_of(e.token)},
                         {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top_logprobs = json::array(), offsets = json::array();
  for (const TokenLogprob& e : entries) {
    tokens.push_back(printable_utf8(e.token));
    token_logprobs.push_back(e.logprob ? json(*e.logprob) : json(nullptr));
    json top = json::object();
    for (const auto& [token, logprob] : e.top) top[printable_utf8(token)] = logprob;
    top_logprobs.push_back(request_.logprobs > 0 && e.logprob ? top : json(nullptr));
    offsets.push_back(e.text_offset);
  }
  return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top_logprobs},
          {"text_offset", offsets}};
}

std::string CompletionSession::echo_text() const {
  if (!request_.echo) return "";
  if (request_.prompt_text) return *request_.prompt_text;
  std::vector<int32_t> ids;
  for (int64_t id : prompt_) {
    if (id < model_.tokenizer->vocab_size()) ids.push_back(static_cast<int32_t>(id));
  }
  return printable_utf8(model_.tokenizer->decode(ids));
}

json CompletionSession::response() const {
  std::lock_guard<std::mutex> lock(mutex_);
  json choice = {{"index", request_.choice_index}, {"finish_reason", finish_reason_text()}};
  const std::string echo = echo_text();
  if (request_.endpoint == Endpoint::kChatCompletions) {
    choice["message"] = {{"role", "assistant"}, {"content", printable_utf8(text_)}};
    choice["logprobs"] = logprobs_json(logprobs_);
  } else {
    choice["text"] = printable_utf8(echo + text_);
    choice["logprobs"] = logprobs_json(logprobs_);
  }
  if (request_.return_token_ids) choice["token_ids"] = token_ids_;
  return {{"id", id_},
          {"object", request_.endpoint == Endpoint::kChatCompletions ? "chat.completion" : "text_completion"},
          {"created", created_},
          {"model", model_.name},
          {"choices", json::array({choice})},
          {"usage", usage()}};
}

json CompletionSession::chunk(const Delta& delta) const {
  json choice = {{"index", request_.choice_index}, {"finish_reason", nullptr}};
  if (request_.endpoint == Endpoint::kChatCompletions) {
    choice["delta"] = {{"content", printable_utf8(delta.text)}};
    choice["logprobs"] = logprobs_json(delta.logprobs);
  } else {
    choice["text"] = printable_utf8(delta.text);
    choice["logprobs"] = logprobs_json(delta.logprobs);
  }
  if (request_.return_token_ids) choice["token_ids"] = delta.token_ids;
  return {{"id", id_},
          {"object", request_.endpoint == Endpoint::kChatCompletions ? "chat.completion.chunk" : "text_completion"},
          {"created", created_},
          {"model", model_.name},
          {"choices", json::array({choice})}};
}

json CompletionSession::role_chunk() const {
  json c = chunk(Delta{});
  c["choices"][0]["delta"] = {{"role", "assistant"}, {"content", ""}};
  return c;
}

json CompletionSession::final_chunk() const {
  json c = chunk(Delta{});
  std::lock_guard<std::mutex> lock(mutex_);
  c["choices"][0]["finish_reason"] = finish_reason_text();
  if (request_.endpoint == Endpoint::kChatCompletions) c["choices"][0]["delta"] = json::object();
  return c;
}

json CompletionSession::usage_chunk() const {
  json c = chunk(Delta{});
  std::lock_guard<std::mutex> lock(mutex_);
  c["choices"] = json::array();
  c["usage"] = usage();
  return c;
}

}  // namespace nextn::server
