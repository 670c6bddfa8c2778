// `nextn report`: the dashboard's charts and a table of final figures for some runs, as one HTML
// file that opens from disk with no network.
#pragma once

#include <string>
#include <vector>

namespace nextn::dashboard {

struct ReportSummary {
  int runs = 0;
  int64_t records = 0;
  int64_t bytes = 0;
};

// Writes the report of the runs under `roots` (find_runs) to `output_path`, atomically. Throws
// nextn::Error when no run is found or the file cannot be written.
ReportSummary write_report(const std::vector<std::string>& roots, const std::string& output_path);

}  // namespace nextn::dashboard
