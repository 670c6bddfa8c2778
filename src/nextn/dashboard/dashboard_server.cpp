#include "nextn/dashboard/dashboard_server.h"

#include <httplib.h>

#include <chrono>
#include <thread>

#include "nextn/dashboard/page.h"
#include "nextn/dashboard/server_probe.h"
#include "nextn/util/error.h"

namespace nextn::dashboard {
namespace {

void send_json(httplib::Response& res, const std::string& body, int status = 200) {
  res.status = status;
  res.set_header("Cache-Control", "no-store");
  res.set_content(body, "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  send_json(res, nlohmann::json{{"error", message}}.dump(), status);
}

// A non-negative integer query parameter (0 when absent); nullopt when malformed.
std::optional<int64_t> integer_param(const httplib::Request& req, const char* name) {
  if (!req.has_param(name)) return 0;
  const std::string text = req.get_param_value(name);
  if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  return std::stoll(text);
}

}  // namespace

DashboardServer::DashboardServer(DashboardOptions options)
    : options_(std::move(options)), catalog_(options_.roots), page_(render_live_page()),
      http_(std::make_unique<httplib::Server>()) {
  http_->new_task_queue = [] { return new httplib::ThreadPool(8); };
  http_->Get("/", [this](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    res.set_content(page_, "text/html; charset=utf-8");
  });
  http_->Get("/api/runs", [this](const httplib::Request&, httplib::Response& res) {
    nlohmann::json body = {{"runs", catalog_.list()}, {"roots", options_.roots},
                           {"server", options_.server_url.empty() ? nlohmann::json() : nlohmann::json(options_.server_url)}};
    send_json(res, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  });
  http_->Get("/api/metrics", [this](const httplib::Request& req, httplib::Response& res) {
    auto generation = integer_param(req, "generation");
    auto from = integer_param(req, "from");
    if (!req.has_param("run") || !generation || !from) {
      return send_error(res, 400, "expected /api/metrics?run=NAME&generation=G&from=N (G, N: non-negative integers)");
    }
    auto body = catalog_.records_since(req.get_param_value("run"), *generation, static_cast<size_t>(*from));
    if (!body) return send_error(res, 404, "no run named '" + req.get_param_value("run") + "'");
    send_json(res, *body);
  });
  http_->Get("/api/server", [this](const httplib::Request&, httplib::Response& res) {
    if (options_.server_url.empty()) return send_error(res, 404, "no server watched (start with --server URL)");
    send_json(res, probe_server(options_.server_url).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  });
}

DashboardServer::~DashboardServer() = default;

void DashboardServer::bind() {
  port_ = options_.port == 0 ? http_->bind_to_any_port(options_.host)
                             : (http_->bind_to_port(options_.host, options_.port) ? options_.port : -1);
  NEXTN_CHECK(port_ > 0, "cannot listen on ", options_.host, ":", options_.port,
              " (address in use, or not an address of this machine)");
}

void DashboardServer::listen() { http_->listen_after_bind(); }

void DashboardServer::stop() {
  // A stop() before listen() got going would be lost and listen() would run on: wait for it.
  for (int i = 0; i < 400 && !http_->is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  http_->stop();
}

}  // namespace nextn::dashboard
