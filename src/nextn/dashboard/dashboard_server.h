// `nextn dashboard`'s HTTP side (cpp-httplib, as `nextn serve`). Routes:
//   GET /                       the page (page.h), which polls:
//   GET /api/runs               the runs found under the roots (RunCatalog::list)
//   GET /api/metrics?run=NAME&generation=G&from=N   new records of one run (RunCatalog::records_since)
//   GET /api/server             the watched `nextn serve`'s counters (probe_server), when --server is set
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nextn/dashboard/run_catalog.h"

namespace httplib {
class Server;
}

namespace nextn::dashboard {

struct DashboardOptions {
  std::vector<std::string> roots;
  std::string host = "127.0.0.1";
  int port = 8080;          // 0: any free port (port() tells which)
  std::string server_url;   // a `nextn serve` to show ("http://127.0.0.1:8000"); empty: none
};

class DashboardServer {
 public:
  explicit DashboardServer(DashboardOptions options);
  ~DashboardServer();

  void bind();  // nextn::Error when the port cannot be had
  int port() const { return port_; }
  void listen();  // blocks until stop()
  void stop();

 private:
  DashboardOptions options_;
  RunCatalog catalog_;
  std::string page_;
  std::unique_ptr<httplib::Server> http_;
  int port_ = -1;
};

}  // namespace nextn::dashboard
