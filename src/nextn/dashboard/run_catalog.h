// The runs a dashboard or a report shows: found under the directories the user names, each with
// its metrics.jsonl read incrementally (MetricsFile) and its training options (run.json).
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "nextn/dashboard/metrics_file.h"

namespace nextn::dashboard {

struct RunLocation {
  std::string name;  // what the page calls it: the directory's name, or parent/name under a root
  std::string dir;
};

// A root is a run directory itself (it has metrics.jsonl or run.json), or a folder whose
// subdirectories (two levels deep: runs/ablation/aux-free) are. Sorted by name; a root that does
// not exist (yet) contributes nothing.
std::vector<RunLocation> find_runs(const std::vector<std::string>& roots);

class RunCatalog {
 public:
  explicit RunCatalog(std::vector<std::string> roots) : roots_(std::move(roots)) {}

  // Looks for runs again and refreshes each: [{"name", "dir", "records", "generation",
  // "seconds_since_modified", "options"}].
  nlohmann::json list();
  // The records of run `name` after the first `from` of generation `generation`, as the JSON text
  // {"run", "generation", "reset", "from", "total", "notes", "seconds_since_modified", "records"};
  // a client of another generation gets everything ("reset": true). nullopt: no such run.
  std::optional<std::string> records_since(const std::string& name, int64_t generation, size_t from);
  // Every run with all its records, for a report: [{"name", "dir", "options", "notes", "records"}].
  nlohmann::json snapshot();

 private:
  struct Run {
    RunLocation location;
    std::unique_ptr<MetricsFile> metrics;
    nlohmann::json options = nlohmann::json::object();  // run.json
    std::string options_note;                         // why run.json could not be read
  };
  void rescan();  // with mu_ held
  static void read_options(Run& run);
  static std::vector<std::string> notes(const Run& run);
  static nlohmann::json describe(const Run& run);  // {"name", "dir", "options", "notes"}

  std::vector<std::string> roots_;
  std::mutex mu_;
  std::map<std::string, Run> runs_;
  int64_t next_generation_ = 0;  // first generation of the next MetricsFile opened
};

}  // namespace nextn::dashboard
