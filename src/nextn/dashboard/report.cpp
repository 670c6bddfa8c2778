#include "nextn/dashboard/report.h"

#include <chrono>
#include <ctime>
#include <filesystem>

#include "nextn/dashboard/page.h"
#include "nextn/dashboard/run_catalog.h"
#include "nextn/io/atomic_file.h"
#include "nextn/util/error.h"

namespace fs = std::filesystem;

namespace nextn::dashboard {

ReportSummary write_report(const std::vector<std::string>& roots, const std::string& output_path) {
  for (const auto& root : roots) NEXTN_CHECK(fs::is_directory(root), "run directory '", root, "' does not exist");
  RunCatalog catalog(roots);
  nlohmann::json runs = catalog.snapshot();
  std::string named;
  for (const auto& root : roots) named += (named.empty() ? "'" : ", '") + root + "'";
  NEXTN_CHECK(!runs.empty(), "no runs (directories with metrics.jsonl or run.json) in ", named);
  const fs::path out = fs::path(output_path);
  NEXTN_CHECK(out.parent_path().empty() || fs::is_directory(out.parent_path()), "cannot write '", output_path,
              "': directory '", out.parent_path().string(), "' does not exist");

  std::time_t now = std::time(nullptr);
  char when[64];
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  ReportSummary summary;
  for (const auto& run : runs) summary.records += static_cast<int64_t>(run["records"].size());
  summary.runs = static_cast<int>(runs.size());
  nlohmann::json data = {{"runs", std::move(runs)}, {"generated", when}, {"version", NEXTN_VERSION}};
  const std::string page = render_report_page(data);
  io::write_file_atomic(output_path, page);
  summary.bytes = static_cast<int64_t>(page.size());
  return summary;
}

}  // namespace nextn::dashboard
