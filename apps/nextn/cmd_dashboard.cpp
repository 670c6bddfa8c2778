// `nextn dashboard`: a local web page that draws runs live (loss per MTP depth, MaxVio, expert
// load heatmaps, ...) and, with --server, a running `nextn serve`'s acceptance and tokens/s.
// `nextn report`: the same charts and a table of final figures as one self-contained HTML file.
#include <chrono>
#include <filesystem>
#include <iostream>
#include <thread>

#include "command_registry.h"
#include "nextn/dashboard/dashboard_server.h"
#include "nextn/dashboard/report.h"
#include "nextn/training/stop_signal.h"
#include "nextn/util/error.h"

namespace fs = std::filesystem;

namespace nextn::cli {
namespace {

void run_dashboard(dashboard::DashboardOptions& options) {
  if (options.roots.empty()) options.roots.push_back("runs");
  for (const auto& root : options.roots) {
    if (!fs::exists(root)) std::cout << "nextn dashboard: '" << root << "' does not exist yet; watching for it" << std::endl;
  }
  if (!options.server_url.empty()) {
    NEXTN_CHECK(options.server_url.rfind("http://", 0) == 0, "--server must be an http:// URL (like http://127.0.0.1:8000), got '",
                options.server_url, "'");
    while (!options.server_url.empty() && options.server_url.back() == '/') options.server_url.pop_back();
  }
  StopSignal stop;
  dashboard::DashboardServer server(options);
  server.bind();
  std::thread listener([&] { server.listen(); });
  std::cout << "nextn dashboard: listening on http://" << options.host << ":" << server.port() << "/ (runs under";
  for (const auto& root : options.roots) std::cout << " " << root;
  if (!options.server_url.empty()) std::cout << "; server " << options.server_url;
  std::cout << ")" << std::endl;
  while (!stop.requested()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  server.stop();
  listener.join();
  std::cout << "nextn dashboard: stopped" << std::endl;
}

void setup_dashboard(CLI::App& app) {
  auto options = std::make_shared<dashboard::DashboardOptions>();
  auto* cmd = app.add_subcommand("dashboard", "a live web page of training runs (and of a nextn serve)");
  cmd->add_option("runs", options->roots, "run directories, or folders of them (default: runs)");
  cmd->add_option("--host", options->host, "address to listen on");
  cmd->add_option("--port", options->port, "port (0: any free one, printed at start)")->check(CLI::Range(0, 65535));
  cmd->add_option("--server", options->server_url, "also show a running nextn serve (http://host:port)");
  cmd->callback([options] { run_dashboard(*options); });
}

struct ReportFlags {
  std::vector<std::string> roots;
  std::string output = "report.html";
};

void run_report(const ReportFlags& f) {
  auto summary = dashboard::write_report(f.roots, f.output);
  std::cout << "nextn report: " << summary.runs << (summary.runs == 1 ? " run, " : " runs, ") << summary.records
            << " records -> " << f.output << " (" << (summary.bytes + 1023) / 1024 << " KiB)" << std::endl;
}

void setup_report(CLI::App& app) {
  auto f = std::make_shared<ReportFlags>();
  auto* cmd = app.add_subcommand("report", "one self-contained HTML file with the charts and final figures of runs");
  cmd->add_option("runs", f->roots, "run directories, or folders of them")->required();
  cmd->add_option("-o,--output", f->output, "the HTML file to write");
  cmd->callback([f] { run_report(*f); });
}

NEXTN_REGISTER_COMMAND(75, setup_dashboard);
NEXTN_REGISTER_COMMAND(76, setup_report);

}  // namespace
}  // namespace nextn::cli
