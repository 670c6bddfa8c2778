#include "nextn/server/http_server.h"

#include <httplib.h>
#include <strings.h>
#include <sys/socket.h>

#include <algorithm>
#include <thread>

#include "nextn/server/client_connection.h"
#include "nextn/util/error.h"

namespace nextn::server {
namespace {

using json = nlohmann::json;
constexpr auto kPoll = std::chrono::milliseconds(20);
// A directly written stream's thread wakes for the request's end, left-over bytes or the client's
// close; the timeout only bounds how long a missed wake-up could last.
constexpr auto kDirectWait = std::chrono::milliseconds(500);

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

const char* status_message(int status) {
  switch (status) {
    case 404: return "no such route";
    case 405: return "method not allowed";
    case 413: return "the request body is too large";
    default: return "the request could not be served";
  }
}

// 503 while the model loads, with Retry-After as for a full queue: clients back off and retry.
ApiError loading(httplib::Response& res) {
  res.set_header("Retry-After", "1");
  return ApiError(503, "the model is still loading", "", "model_loading");
}

// A session per choice of the request (n per prompt of a batch, the prompt tokenized once for
// them; errors naming the prompt).
std::vector<std::shared_ptr<CompletionSession>> open_sessions(const CompletionRequest& request,
                                                              const ServedModel& model, Metrics* metrics) {
  std::vector<std::shared_ptr<CompletionSession>> sessions;
  const size_t count = choice_count(request), per_prompt = static_cast<size_t>(request.n);
  for (size_t c = 0; c < count; ++c) {
    try {
      const CompletionRequest one = count > 1 ? for_choice(request, c) : request;
      const std::vector<int64_t>* ids = c % per_prompt == 0 ? nullptr : &sessions[c - c % per_prompt]->prompt();
      sessions.push_back(std::make_shared<CompletionSession>(one, model, metrics, ids));
      if (c > 0) sessions[c]->answer_as(*sessions.front());
    } catch (const ApiError& e) {
      if (request.prompts.size() <= 1) throw;
      throw ApiError(e.status(), "prompt[" + std::to_string(c / per_prompt) + "]: " + e.what(), e.param(), e.code());
    }
  }
  return sessions;
}

// More choices than the server ever holds at once (--max-batch running + --max-queue waiting)
// would be refused however long the client waited: 400, not a 503 to retry. Checked before any
// prompt is tokenized.
void check_servable(const CompletionRequest& request, const EngineOptions& limits) {
  const size_t choices = choice_count(request), prompts = std::max<size_t>(request.prompts.size(), 1);
  if (static_cast<int64_t>(choices) <= limits.max_batch + limits.max_queue) return;
  throw ApiError(400, std::to_string(choices) + " choices (" + std::to_string(prompts) + " prompts x n = " +
                          std::to_string(request.n) + ") exceed the " +
                          std::to_string(limits.max_batch + limits.max_queue) +
                          " requests this server holds at once (--max-batch + --max-queue)",
                 request.n > 1 ? "n" : "prompt", "too_many_choices");
}

// Queues every session's request, or none: when one is refused the ones before are cancelled.
void submit_all(Engine& engine, const std::vector<std::shared_ptr<CompletionSession>>& sessions,
                httplib::Response& res) {
  for (size_t i = 0; i < sessions.size(); ++i) {
    Engine::Admission admission;
    try {
      admission = engine.submit(sessions[i]->make_engine_request());
    } catch (const Error& e) {
      for (size_t j = 0; j < i; ++j) sessions[j]->cancel();
      throw ApiError(400, e.what());
    }
    if (admission == Engine::Admission::kAccepted) continue;
    for (size_t j = 0; j < i; ++j) sessions[j]->cancel();
    if (admission == Engine::Admission::kStopping) {
      throw ApiError(503, "the server is shutting down", "", "server_shutting_down");
    }
    res.set_header("Retry-After", "1");
    throw ApiError(503, sessions.size() > 1 ? "the server is busy: the queue has no room for all " +
                                                  std::to_string(sessions.size()) + " prompts; retry later, or send fewer"
                                            : std::string("the server is busy: every place and the queue are taken; "
                                                          "retry later"),
                   "", "server_busy");
  }
}

// The usage of a batch of choices: every session's, summed (drafts per depth too), with each
// prompt's tokens counted once for its n choices, as OpenAI counts them.
json summed_usage(const std::vector<std::shared_ptr<CompletionSession>>& sessions) {
  int64_t prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
  std::vector<int64_t> drafted, accepted;
  auto add_to = [](std::vector<int64_t>& sum, const json& counts) {
    if (sum.size() < counts.size()) sum.resize(counts.size(), 0);
    for (size_t k = 0; k < counts.size(); ++k) sum[k] += counts[k].get<int64_t>();
  };
  for (const auto& session : sessions) {
    const json usage = session->usage();
    if (session->request().choice_index % static_cast<size_t>(sessions.front()->request().n) == 0) {
      prompt_tokens += usage["prompt_tokens"].get<int64_t>();
      cached_tokens += usage["prompt_tokens_details"]["cached_tokens"].get<int64_t>();
    }
    completion_tokens += usage["completion_tokens"].get<int64_t>();
    add_to(drafted, usage["speculative"]["drafted"]);
    add_to(accepted, usage["speculative"]["accepted"]);
  }
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", cached_tokens}}},
          {"speculative", {{"drafted", drafted}, {"accepted", accepted}}}};
}

// The whole response of a batch of choices: each with its index, usage summed.
json batch_response(const std::vector<std::shared_ptr<CompletionSession>>& sessions) {
  json out;
  json choices = json::array();
  for (const auto& session : sessions) {
    json one = session->response();
    choices.push_back(std::move(one["choices"][0]));
    if (out.is_null()) out = std::move(one);  // id, object, created, model: the first's (all share them)
  }
  out["choices"] = choices;
  out["usage"] = summed_usage(sessions);
  return out;
}

// The stream of a batch of choices: each chunk names its choice by index (a chat's choices each
// start with their role chunk), each choice ends with its own finish_reason chunk, the stream with
// one [DONE] after the last. The request's thread writes every chunk (the engine's direct writes
// serve single streams). A choice that errs or is cut short ends the whole stream with an error
// event, as a single stream does.
struct BatchStream {
  std::vector<std::shared_ptr<CompletionSession>> sessions;
  ClientConnection connection;
  std::shared_ptr<std::vector<bool>> ended;  // per session: its finish_reason chunk is written
  std::shared_ptr<bool> started;

  bool operator()(size_t, httplib::DataSink& sink) const {
    auto write = [&](const std::string& text) { return sink.write(text.data(), text.size()); };
    auto gone = [&] {
      for (const auto& session : sessions) session->cancel();
      return false;
    };
    if (!*started) {
      *started = true;
      for (const auto& session : sessions) {
        if (session->request().endpoint == Endpoint::kChatCompletions && !write(sse_event(session->role_chunk()))) {
          return gone();
        }
        const std::string echo = session->scores_prompt() ? "" : session->echo_text();
        if (echo.empty()) continue;  // scored, the engine's prompt event carries it
        CompletionSession::Delta d;
        d.text = echo;
        if (!write(sse_event(session->chunk(d)))) return gone();
      }
    }
    for (size_t i = 0; i < sessions.size(); ++i) {
      if (!(*ended)[i]) {
        sessions[i]->wait(kPoll);  // the first running one; the others' output is taken below too
        break;
      }
    }
    for (size_t i = 0; i < sessions.size(); ++i) {
      if ((*ended)[i]) continue;
      const std::shared_ptr<CompletionSession>& session = sessions[i];
      CompletionSession::Delta delta = session->take();
      if (session->worth_a_chunk(delta) && !write(sse_event(session->chunk(delta)))) return gone();
      if (!session->finished()) continue;
      if (session->finish_reason() == FinishReason::kError || session->finish_reason() == FinishReason::kCancelled) {
        write(sse_event(session->finish_reason() == FinishReason::kError
                            ? ApiError(500, session->stats().error).to_json()
                            : ApiError(503, "the server stopped before the request finished", "",
                                       "server_shutting_down").to_json()));
        write("data: [DONE]\n\n");
        for (const auto& other : sessions) other->cancel();
        sink.done();
        return true;
      }
      if (!write(sse_event(session->final_chunk()))) return gone();
      (*ended)[i] = true;
    }
    if (connection.closed()) return gone();
    if (std::all_of(ended->begin(), ended->end(), [](bool e) { return e; })) {
      if (sessions.front()->request().include_usage) {
        json usage = sessions.front()->usage_chunk();
        usage["usage"] = summed_usage(sessions);
        write(sse_event(usage));
      }
      write("data: [DONE]\n\n");
      sink.done();
    }
    return true;
  }
};

}  // namespace

HttpServer::HttpServer(HttpOptions options) : options_(std::move(options)), http_(std::make_unique<httplib::Server>()) {
  const int threads = options_.threads > 0 ? options_.threads : 64;
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  http_->set_payload_max_length(options_.max_body_bytes);
  // httplib's defaults (SO_REUSEADDR), and the listening socket kept: bind() raises its backlog.
  http_->set_socket_options([this](int socket) {
    int yes = 1;
    ::setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listen_socket_ = socket;
  });
  http_->set_keep_alive_max_count(1000);
  // Everything httplib answers itself (an unknown route, a body over the limit) in OpenAI's format.
  http_->set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string message = std::string(status_message(res.status)) + ": " + req.method + " " + req.path;
    if (res.status == 413) {
      // httplib (0.11, compiled into Debian's library) caps form-encoded bodies, curl -d's default
      // type, far below our limit: say what to send instead of a limit the body did not exceed.
      const bool form = req.get_header_value("Content-Type").rfind("application/x-www-form-urlencoded", 0) == 0;
      message += form ? " (a body sent as application/x-www-form-urlencoded may hold at most " +
                            std::to_string(CPPHTTPLIB_FORM_URL_ENCODED_PAYLOAD_MAX_LENGTH) +
                            " bytes: send the JSON with 'Content-Type: application/json')"
                      : " (at most " + std::to_string(options_.max_body_bytes) + " bytes)";
    }
    send_json(res, res.status, ApiError(res.status, message).to_json());
  });
  http_->set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr error) {
    std::string what = "internal error";
    try {
      if (error) std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = e.what();
    }
    send_json(res, 500, ApiError(500, what).to_json());
  });
  routes();
}

HttpServer::~HttpServer() = default;

void HttpServer::bind() {
  if (options_.port == 0) {
    port_ = http_->bind_to_any_port(options_.host);
  } else {
    port_ = http_->bind_to_port(options_.host, options_.port) ? options_.port : -1;
  }
  NEXTN_CHECK(port_ > 0, "cannot listen on ", options_.host, ":", options_.port,
              " (address in use, or not an address of this machine)");
  // httplib 0.11 listens with a backlog of 5: clients connecting together beyond that have their
  // connection attempt dropped and retried a second later. listen() again sets a larger one.
  if (listen_socket_ >= 0) ::listen(listen_socket_, SOMAXCONN);
}

void HttpServer::listen() { http_->listen_after_bind(); }

void HttpServer::stop() {
  // A stop() before listen() got going would be lost and listen() would run on: wait for it.
  for (int i = 0; i < 400 && !http_->is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  http_->stop();
}

void HttpServer::attach(Engine* engine, ServedModel model) {
  model_ = std::move(model);
  engine_ = engine;
}

void HttpServer::routes() {
  auto authorized = [this](const httplib::Request& req) {
    if (options_.api_key.empty()) return;
    // The scheme's name is case-insensitive (RFC 7235 section 2.1): "bearer KEY" is as good.
    const std::string header = req.get_header_value("Authorization");
    const bool bearer = header.size() > 7 && strncasecmp(header.c_str(), "Bearer ", 7) == 0;
    if (!bearer || header.substr(7) != options_.api_key) {
      throw ApiError(401, "Incorrect or missing API key: send 'Authorization: Bearer <key>'", "", "invalid_api_key");
    }
  };

  http_->Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (engine_ == nullptr) return send_json(res, 503, {{"status", "loading"}});
    if (!accepting_) return send_json(res, 503, {{"status", "stopping"}});
    send_json(res, 200, {{"status", "ok"}});
  });

  http_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    EngineGauges gauges;
    if (Engine* engine = engine_) {
      gauges = {engine->running(), engine->queued(), engine->last_batch_size(), engine->steps(),
                engine->prefix_cache_bytes()};
    }
    res.set_content(metrics_.render(gauges), "text/plain; version=0.0.4; charset=utf-8");
  });

  // 404 in OpenAI's words for a model this server does not have.
  auto check_model = [this](const std::string& name) {
    if (name == model_.name) return;
    throw ApiError(404, "The model '" + name + "' does not exist; this server has '" + model_.name + "'", "model",
                   "model_not_found");
  };

  // GET /v1/models lists the one model; GET /v1/models/{id} retrieves it (client.models.retrieve).
  auto models = [this, authorized, check_model](const httplib::Request& req, httplib::Response& res) {
    try {
      authorized(req);
      if (engine_ == nullptr) throw loading(res);
      json model = {{"id", model_.name}, {"object", "model"}, {"created", unix_time()}, {"owned_by", "nextn"},
                    {"max_model_len", model_.context_length}};
      if (req.matches.size() > 1) {
        check_model(req.matches[1]);
        send_json(res, 200, model);
      } else {
        send_json(res, 200, {{"object", "list"}, {"data", json::array({model})}});
      }
      metrics_.request("models", 200);
    } catch (const ApiError& e) {
      send_json(res, e.status(), e.to_json());
      metrics_.request("models", e.status());
    }
  };
  http_->Get("/v1/models", models);
  http_->Get(R"(/v1/models/(.+))", models);

  auto completions = [this, authorized, check_model](Endpoint endpoint) {
    const std::string name = endpoint == Endpoint::kCompletions ? "completions" : "chat_completions";
    return [this, authorized, check_model, endpoint, name](const httplib::Request& req, httplib::Response& res) {
      try {
        authorized(req);
        Engine* engine = engine_;
        if (engine == nullptr) throw loading(res);
        if (!accepting_) throw ApiError(503, "the server is shutting down", "", "server_shutting_down");
        CompletionRequest request = parse_completion_request(endpoint, req.body);
        check_model(request.model);
        check_servable(request, engine->options());
        const std::vector<std::shared_ptr<CompletionSession>> sessions = open_sessions(request, model_, &metrics_);
        submit_all(*engine, sessions, res);
        const std::shared_ptr<CompletionSession>& session = sessions.front();  // the one of a single choice
        const ClientConnection connection(req.local_addr, req.local_port, req.remote_addr, req.remote_port);
        if (!request.stream) {
          for (const auto& s : sessions) {
            while (!s->done()) {
              if (connection.closed()) {
                for (const auto& each : sessions) each->cancel();  // the engine drops them at its next step
                metrics_.request(name, 499);
                return;
              }
              s->wait_done(kPoll);
            }
          }
          for (const auto& s : sessions) {
            if (s->finish_reason() == FinishReason::kError) throw ApiError(500, s->stats().error);
            if (s->finish_reason() == FinishReason::kCancelled) {
              throw ApiError(503, "the server stopped before the request finished", "", "server_shutting_down");
            }
          }
          send_json(res, 200, sessions.size() == 1 ? session->response() : batch_response(sessions));
          metrics_.request(name, 200);
          return;
        }
        metrics_.request(name, 200);
        res.set_header("Cache-Control", "no-cache");
        if (sessions.size() > 1) {
          res.set_chunked_content_provider(
              "text/event-stream",
              BatchStream{sessions, connection, std::make_shared<std::vector<bool>>(sessions.size(), false),
                          std::make_shared<bool>(false)},
              [sessions](bool success) {
                if (!success) {
                  for (const auto& session : sessions) session->cancel();
                }
              });
          return;
        }
        // With the client's socket known, the engine writes each token's chunk itself and this
        // thread sleeps until the end (chunked_socket_writer.h); else this thread writes them.
        std::shared_ptr<ChunkedSocketWriter> writer;
        if (connection.found()) writer = std::make_shared<ChunkedSocketWriter>(connection.fd());
        auto started = std::make_shared<bool>(false);
        res.set_chunked_content_provider(
            "text/event-stream",
            [session, connection, started, writer](size_t, httplib::DataSink& sink) {
              auto write = [&](const std::string& text) { return sink.write(text.data(), text.size()); };
              auto gone = [&] {
                session->cancel();
                session->stop_streaming();
                return false;
              };
              if (!*started) {
                *started = true;
                if (session->request().endpoint == Endpoint::kChatCompletions && !write(sse_event(session->role_chunk()))) {
                  return gone();
                }
                const std::string echo = session->scores_prompt() ? "" : session->echo_text();
                if (!echo.empty()) {  // scored, the engine sends it with its log-probabilities
                  CompletionSession::Delta d;
                  d.text = echo;
                  if (!write(sse_event(session->chunk(d)))) return gone();
                }
                if (writer) session->stream_to(writer);
              }
              if (writer) {
                const auto event = writer->wait(kDirectWait);
                if (event == ChunkedSocketWriter::Event::kPeerClosed || !writer->flush()) return gone();
                if (!session->done()) return true;
                session->stop_streaming();  // the engine is done writing; the end goes through httplib
                if (!writer->flush()) return gone();
              } else {
                session->wait(kPoll);
              }
              CompletionSession::Delta delta = session->take();
              if (session->worth_a_chunk(delta) && !write(sse_event(session->chunk(delta)))) return gone();
              if (connection.closed()) return gone();
              if (session->finished()) {
                // A request that did not finish gets an error event (the openai clients raise it),
                // not a finish_reason: a stream cut short must not read as a complete answer.
                if (session->finish_reason() == FinishReason::kError) {
                  write(sse_event(ApiError(500, session->stats().error).to_json()));
                } else if (session->finish_reason() == FinishReason::kCancelled) {
                  write(sse_event(ApiError(503, "the server stopped before the request finished", "",
                                           "server_shutting_down")
                                      .to_json()));
                } else {
                  write(sse_event(session->final_chunk()));
                  if (session->request().include_usage) write(sse_event(session->usage_chunk()));
                }
                write("data: [DONE]\n\n");
                sink.done();
              }
              return true;
            },
            [session](bool success) {
              // Before httplib may close the socket: the engine stops writing to it.
              session->stop_streaming();
              if (!success) session->cancel();
            });
      } catch (const ApiError& e) {
        send_json(res, e.status(), e.to_json());
        metrics_.request(name, e.status());
      }
    };
  };
  http_->Post("/v1/completions", completions(Endpoint::kCompletions));
  http_->Post("/v1/chat/completions", completions(Endpoint::kChatCompletions));

  // vLLM's /tokenize and /detokenize: the token ids a completion's "prompt" or a chat's "messages"
  // feed the model (the chat format applied, the document's first token included), and the text
  // of token ids. Fields are checked as the completions endpoints check them; "model" may be left out.
  auto tokens = [this, authorized, check_model](bool tokenize) {
    return [this, authorized, check_model, tokenize](const httplib::Request& req, httplib::Response& res) {
      const char* name = tokenize ? "tokenize" : "detokenize";
      try {
        authorized(req);
        if (engine_ == nullptr) throw loading(res);
        json body = json::parse(req.body, nullptr, false);
        if (body.is_discarded() || !body.is_object()) throw ApiError(400, "the body must be a JSON object");
        if (!body.contains("model")) body["model"] = model_.name;
        if (!body["model"].is_string()) throw ApiError(400, "'model' must be a string", "model");
        check_model(body["model"]);
        if (tokenize) {
          const bool chat = body.contains("messages");
          if (chat && body.contains("add_generation_prompt") && body["add_generation_prompt"] != true) {
            throw ApiError(400, "'add_generation_prompt' can only be true: chat prompts end where the reply starts",
                           "add_generation_prompt", "unsupported_value");
          }
          const CompletionRequest request =
              parse_completion_request(chat ? Endpoint::kChatCompletions : Endpoint::kCompletions, body.dump());
          if (request.prompts.size() > 1) throw ApiError(400, "/tokenize takes one prompt", "prompt");
          const std::vector<int64_t> ids = request_prompt_ids(request, model_);
          send_json(res, 200, {{"count", ids.size()}, {"max_model_len", model_.context_length}, {"tokens", ids}});
        } else {
          if (!body.contains("tokens") || !body["tokens"].is_array()) {
            throw ApiError(400, "'tokens' must be an array of token ids", "tokens");
          }
          std::vector<int32_t> ids;
          for (const json& id : body["tokens"]) {
            const int64_t vocab = model_.tokenizer->vocab_size();
            if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= vocab) {
              throw ApiError(400, "'tokens' holds " + id.dump() + ", not a token id of the tokenizer's [0, " +
                                      std::to_string(vocab) + ")", "tokens", "invalid_value");
            }
            ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
          }
          send_json(res, 200, {{"prompt", printable_utf8(model_.tokenizer->decode(ids))}});
        }
        metrics_.request(name, 200);
      } catch (const ApiError& e) {
        send_json(res, e.status(), e.to_json());
        metrics_.request(name, e.status());
      } catch (const Error& e) {  // the tokenizer refusing input (an id it cannot decode)
        send_json(res, 400, ApiError(400, e.what(), tokenize ? "" : "tokens").to_json());
        metrics_.request(name, 400);
      }
    };
  };
  http_->Post("/tokenize", tokens(true));
  http_->Post("/detokenize", tokens(false));

  // A known path with the wrong method: 405 with Allow, not the 404 of an unknown path.
  auto wrong_method = [](const char* allowed) {
    return [allowed](const httplib::Request& req, httplib::Response& res) {
      res.set_header("Allow", allowed);
      send_json(res, 405, ApiError(405, req.method + " " + req.path + " is not supported; use " + allowed).to_json());
    };
  };
  for (const char* path : {"/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"}) {
    http_->Get(path, wrong_method("POST"));
    http_->Put(path, wrong_method("POST"));
    http_->Delete(path, wrong_method("POST"));
  }
  for (const char* path : {"/v1/models", R"(/v1/models/(.+))", "/health", "/metrics"}) {
    http_->Post(path, wrong_method("GET"));
    http_->Put(path, wrong_method("GET"));
    http_->Delete(path, wrong_method("GET"));
  }
}

}  // namespace nextn::server
