// Reads a run's metrics.jsonl as it grows, for the dashboard and the report.
//
// The trainer appends one JSON object per line ({"type": "train" | "eval" | "experts", "step", ...};
// src/nextn/training/metrics_log.h). A reader must cope with what a live or crashed run leaves:
// a last line still being written (no newline yet), a line torn by a kill, a file rewritten by a
// resumed run (it drops the steps it replays) or replaced by a new run of the same name. Valid
// records are kept as their text; invalid lines are skipped and each is described in a note.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace nextn::dashboard {

struct SkippedLine {
  int64_t line = 0;     // 1-based line number in the file
  std::string reason;   // what is wrong with it
};

// Checks one metrics line. Returns "" for a record the page can draw, else why it is not one.
std::string check_metrics_record(const nlohmann::json& record);

class MetricsFile {
 public:
  // first_generation: where generation() starts (a catalog gives each file it opens its own range,
  // so that a run deleted and started again under the same name is never taken for the old one).
  explicit MetricsFile(std::string path, int64_t first_generation = 0)
      : path_(std::move(path)), generation_(first_generation) {}

  // Reads what was appended since the last call. When the file was replaced, shortened or rewritten
  // in place (its first bytes differ), starts over and increments generation(). Returns true when
  // anything changed.
  bool refresh();

  const std::string& path() const { return path_; }
  bool exists() const { return exists_; }
  // Counts up each time the file is read from its start again; a client holding records of an
  // older generation must drop them.
  int64_t generation() const { return generation_; }
  // The valid records in file order, each as its JSON text.
  const std::vector<std::string>& records() const { return records_; }
  const std::vector<SkippedLine>& skipped() const { return skipped_; }
  // Bytes after the last newline: a line being written, or the remains of one torn by a crash.
  int64_t incomplete_tail_bytes() const { return static_cast<int64_t>(tail_.size()); }
  // Seconds since the file was last modified (-1 when it does not exist).
  double seconds_since_modified() const;

  // The records from index `from` on, as a JSON array text "[{...},{...}]".
  std::string records_json(size_t from) const;
  // The notes a reader should see: one per skipped line (at most `limit`, then a count), and one
  // for an incomplete last line.
  std::vector<std::string> notes(size_t limit = 20) const;

 private:
  void reset();
  void take_line(std::string line);

  std::string path_;
  bool exists_ = false;
  int64_t generation_ = 0;
  uint64_t inode_ = 0;
  int64_t offset_ = 0;  // bytes consumed, up to and including the last newline
  int64_t lines_ = 0;
  std::string tail_;
  // The file's first bytes, and the last bytes consumed (ending at offset_), as read: a file
  // rewritten in place no longer has them where they were.
  std::string head_, consumed_end_;
  std::vector<std::string> records_;
  std::vector<SkippedLine> skipped_;
};

}  // namespace nextn::dashboard
