#include "nextn/dashboard/run_catalog.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "nextn/io/atomic_file.h"

namespace fs = std::filesystem;

namespace nextn::dashboard {
namespace {

bool is_run_dir(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / "metrics.jsonl", ec) || fs::is_regular_file(dir / "run.json", ec);
}

std::vector<fs::path> subdirectories(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    if (it->is_directory(type_ec)) out.push_back(it->path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::vector<RunLocation> find_runs(const std::vector<std::string>& roots) {
  std::vector<RunLocation> found;
  std::set<std::string> names, dirs;
  auto add = [&](const std::string& name, const fs::path& dir) {
    const std::string key = fs::weakly_canonical(dir).string();
    if (!dirs.insert(key).second) return;  // named twice
    // Two roots with a run of the same name: the second is called by its path.
    found.push_back({names.insert(name).second ? name : dir.string(), dir.string()});
  };
  for (const auto& root_text : roots) {
    fs::path root = fs::path(root_text).lexically_normal();
    if (!root.has_filename() && root.has_parent_path()) root = root.parent_path();  // "runs/" -> "runs"
    std::error_code ec;
    if (!fs::is_directory(root, ec)) continue;
    if (is_run_dir(root)) {
      fs::path absolute = fs::absolute(root).lexically_normal();  // "." -> "/path/to/run/"
      if (!absolute.has_filename()) absolute = absolute.parent_path();
      add(absolute.filename().string(), root);
      continue;
    }
    for (const auto& child : subdirectories(root)) {
      if (is_run_dir(child)) {
        add(child.filename().string(), child);
        continue;
      }
      for (const auto& grandchild : subdirectories(child)) {
        if (is_run_dir(grandchild)) add(child.filename().string() + "/" + grandchild.filename().string(), grandchild);
      }
    }
  }
  std::sort(found.begin(), found.end(), [](const RunLocation& a, const RunLocation& b) { return a.name < b.name; });
  return found;
}

void RunCatalog::read_options(Run& run) {
  const std::string path = (fs::path(run.location.dir) / "run.json").string();
  run.options = nlohmann::json::object();
  run.options_note.clear();
  if (!io::file_exists(path)) return;
  try {
    nlohmann::json options = nlohmann::json::parse(io::read_file(path));
    if (options.is_object()) {
      run.options = std::move(options);
    } else {
      run.options_note = path + " is not a JSON object";
    }
  } catch (const std::exception& e) {
    run.options_note = path + " could not be read: " + e.what();
  }
}

void RunCatalog::rescan() {
  std::set<std::string> present;
  for (auto& location : find_runs(roots_)) {
    present.insert(location.name);
    auto it = runs_.find(location.name);
    if (it == runs_.end() || it->second.location.dir != location.dir) {
      Run run;
      run.location = location;
      run.metrics =
          std::make_unique<MetricsFile>((fs::path(location.dir) / "metrics.jsonl").string(), next_generation_);
      next_generation_ += int64_t{1} << 32;
      runs_[location.name] = std::move(run);
    }
  }
  for (auto it = runs_.begin(); it != runs_.end();) {
    it = present.count(it->first) ? std::next(it) : runs_.erase(it);
  }
  for (auto& [name, run] : runs_) {
    run.metrics->refresh();
    read_options(run);  // small; a run writes it once at its start
  }
}

std::vector<std::string> RunCatalog::notes(const Run& run) {
  std::vector<std::string> out = run.metrics->notes();
  if (!run.options_note.empty()) out.push_back(run.options_note);
  return out;
}

nlohmann::json RunCatalog::describe(const Run& run) {
  return {{"name", run.location.name}, {"dir", run.location.dir}, {"options", run.options}, {"notes", notes(run)}};
}

nlohmann::json RunCatalog::list() {
  std::lock_guard<std::mutex> lock(mu_);
  rescan();
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [name, run] : runs_) {
    nlohmann::json entry = describe(run);
    entry["records"] = run.metrics->records().size();
    entry["generation"] = run.metrics->generation();
    entry["seconds_since_modified"] = run.metrics->seconds_since_modified();
    out.push_back(std::move(entry));
  }
  return out;
}

std::optional<std::string> RunCatalog::records_since(const std::string& name, int64_t generation, size_t from) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = runs_.find(name);
  if (it == runs_.end()) {
    rescan();
    it = runs_.find(name);
    if (it == runs_.end()) return std::nullopt;
  }
  MetricsFile& metrics = *it->second.metrics;
  metrics.refresh();
  const bool reset = generation != metrics.generation() || from > metrics.records().size();
  if (reset) from = 0;
  nlohmann::json head = {{"run", name},
                         {"generation", metrics.generation()},
                         {"reset", reset},
                         {"from", from},
                         {"total", metrics.records().size()},
                         {"notes", notes(it->second)},
                         {"seconds_since_modified", metrics.seconds_since_modified()}};
  std::string text = head.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  text.pop_back();  // the closing brace: the records follow as their own text
  return text + ",\"records\":" + metrics.records_json(from) + "}";
}

nlohmann::json RunCatalog::snapshot() {
  std::lock_guard<std::mutex> lock(mu_);
  rescan();
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [name, run] : runs_) {
    nlohmann::json entry = describe(run);
    entry["records"] = nlohmann::json::array();
    for (const auto& record : run.metrics->records()) entry["records"].push_back(nlohmann::json::parse(record));
    out.push_back(std::move(entry));
  }
  return out;
}

}  // namespace nextn::dashboard
