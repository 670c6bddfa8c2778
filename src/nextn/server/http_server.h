// `nextn serve`'s HTTP side: the OpenAI API over cpp-httplib (Debian's libcpp-httplib-dev, the
// library llama.cpp's server uses). Routes:
//   POST /v1/completions, POST /v1/chat/completions   (stream: Server-Sent Events, data: [DONE])
//   GET /v1/models, GET /health (200 once the model is loaded, 503 before), GET /metrics
// Errors are OpenAI's {"error": {...}} with their status; a full queue is 503 with Retry-After;
// with an API key every /v1 route needs "Authorization: Bearer <key>" (401 otherwise).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "nextn/server/completion_session.h"
#include "nextn/server/engine.h"
#include "nextn/server/metrics.h"

namespace httplib {
class Server;
}

namespace nextn::server {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8000;            // 0: any free port (port() tells which)
  std::string api_key;        // empty: no authentication
  size_t max_body_bytes = 1 << 20;
  int threads = 0;            // HTTP worker threads; 0: max_batch + max_queue + 16
};

class HttpServer {
 public:
  explicit HttpServer(HttpOptions options);
  ~HttpServer();

  // Binds the port (nextn::Error when it cannot); requests are answered from listen() on.
  void bind();
  int port() const { return port_; }
  // Serves until stop(); blocks. Before attach(), /health and /v1 answer 503 (loading).
  void listen();
  // The model is loaded: from now on requests run on `engine`.
  void attach(Engine* engine, ServedModel model);
  // SIGTERM: new requests get 503 while the running ones finish; then stop() ends listen().
  void stop_accepting() { accepting_ = false; }
  void stop();

  Metrics& metrics() { return metrics_; }

 private:
  void routes();

  HttpOptions options_;
  std::unique_ptr<httplib::Server> http_;
  int port_ = -1;
  int listen_socket_ = -1;
  std::atomic<Engine*> engine_{nullptr};
  ServedModel model_;
  std::atomic<bool> accepting_{true};
  Metrics metrics_;
};

}  // namespace nextn::server
