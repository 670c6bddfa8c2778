#include "nextn/dashboard/metrics_file.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <initializer_list>

namespace nextn::dashboard {
namespace {

bool number_or_null(const nlohmann::json& v) { return v.is_number() || v.is_null(); }

bool numbers(const nlohmann::json& v) {
  if (!v.is_array()) return false;
  for (const auto& x : v) {
    if (!number_or_null(x)) return false;
  }
  return true;
}

bool rows_of_numbers(const nlohmann::json& v) {
  if (!v.is_array()) return false;
  for (const auto& row : v) {
    if (!numbers(row)) return false;
  }
  return true;
}

// Each named field, where present, must be a number (or null: a non-finite value) / an array of them.
std::string check_fields(const nlohmann::json& r, std::initializer_list<const char*> scalars,
                         std::initializer_list<const char*> arrays) {
  for (const char* name : scalars) {
    if (r.contains(name) && !number_or_null(r[name])) return std::string("'") + name + "' is not a number";
  }
  for (const char* name : arrays) {
    if (r.contains(name) && !numbers(r[name])) return std::string("'") + name + "' is not an array of numbers";
  }
  return "";
}

std::string check_experts(const nlohmann::json& r) {
  if (!r.contains("load") || !r["load"].is_array()) return "'load' is missing or not an array";
  if (!r.contains("bias") || !rows_of_numbers(r["bias"])) return "'bias' is missing or not arrays of numbers";
  const auto& load = r["load"];
  const auto& bias = r["bias"];
  if (bias.size() != load.size()) return "'load' and 'bias' have different numbers of layers";
  for (size_t l = 0; l < load.size(); ++l) {
    if (!load[l].is_array()) return "'load' of layer " + std::to_string(l) + " is not an array";
    for (const auto& count : load[l]) {
      if (!count.is_number_integer() || count.get<int64_t>() < 0) {
        return "'load' of layer " + std::to_string(l) + " holds something other than token counts";
      }
    }
    if (load[l].size() != bias[l].size()) return "layer " + std::to_string(l) + " has a load and a bias of different sizes";
  }
  return "";
}

}  // namespace

std::string check_metrics_record(const nlohmann::json& r) {
  if (!r.is_object()) return "not a JSON object";
  if (!r.contains("type") || !r["type"].is_string()) return "no \"type\"";
  if (!r.contains("step") || !r["step"].is_number_integer() || r["step"].get<int64_t>() < 0) {
    return "no \"step\" (a non-negative integer)";
  }
  const std::string type = r["type"];
  if (type == "train") {
    if (!r.contains("loss") || !r.contains("main_loss")) return "a train record without 'loss' or 'main_loss'";
    return check_fields(r,
                        {"loss", "main_loss", "main_accuracy", "balance_loss", "lr", "grad_norm", "mtp_lambda",
                         "bias_gamma", "max_vio_batch", "tokens_per_second", "tokens_seen", "elapsed_seconds"},
                        {"mtp_loss", "mtp_accuracy", "max_vio_layers"});
  }
  if (type == "eval") {
    if (!r.contains("main_loss")) return "an eval record without 'main_loss'";
    std::string why = check_fields(r, {"main_loss", "main_accuracy", "tokens"}, {"mtp_loss", "mtp_accuracy", "max_vio_global"});
    if (why.empty() && r.contains("expert_load") && !rows_of_numbers(r["expert_load"])) {
      why = "'expert_load' is not arrays of numbers";
    }
    return why;
  }
  if (type == "experts") return check_experts(r);
  return "";  // a record type of a newer nextn: kept, and drawn by nothing
}

void MetricsFile::reset() {
  if (offset_ > 0 || !records_.empty() || !skipped_.empty() || !tail_.empty()) ++generation_;
  offset_ = 0;
  lines_ = 0;
  tail_.clear();
  head_.clear();
  consumed_end_.clear();
  records_.clear();
  skipped_.clear();
}

bool MetricsFile::refresh() {
  struct stat info {};
  if (::stat(path_.c_str(), &info) != 0) {
    const bool changed = exists_;
    if (exists_) reset();
    exists_ = false;
    return changed;
  }
  exists_ = true;
  // A new file (a new run, or a resumed run's rewrite) or a shorter one: read it from the start.
  if (static_cast<uint64_t>(info.st_ino) != inode_ || info.st_size < offset_ + static_cast<int64_t>(tail_.size())) {
    const bool had_content = offset_ > 0 || !tail_.empty();
    reset();
    inode_ = static_cast<uint64_t>(info.st_ino);
    if (had_content && info.st_size == 0) return true;
  }
  std::ifstream in(path_, std::ios::binary);
  if (!in) return false;  // removed between stat and open: the next refresh sees it
  // Rewritten in place (same inode, e.g. cp onto it): its first bytes, or those just before where
  // reading stopped, are no longer what was read there.
  auto unchanged = [&in](int64_t at, const std::string& expected) {
    std::string bytes(expected.size(), '\0');
    in.seekg(at);
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    const bool same = in.gcount() == static_cast<std::streamsize>(bytes.size()) && bytes == expected;
    in.clear();
    return same;
  };
  if (!unchanged(0, head_) || !unchanged(offset_ - static_cast<int64_t>(consumed_end_.size()), consumed_end_)) {
    reset();
    inode_ = static_cast<uint64_t>(info.st_ino);
  }
  const int64_t start = offset_ + static_cast<int64_t>(tail_.size());
  if (info.st_size == start) return false;
  in.seekg(start);
  std::string chunk(static_cast<size_t>(info.st_size - start), '\0');
  in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  chunk.resize(static_cast<size_t>(in.gcount()));
  if (start == 0) head_ = chunk.substr(0, 64);
  tail_ += chunk;
  size_t begin = 0;
  for (size_t newline = tail_.find('\n'); newline != std::string::npos; newline = tail_.find('\n', begin)) {
    take_line(tail_.substr(begin, newline - begin));
    offset_ += static_cast<int64_t>(newline - begin + 1);
    begin = newline + 1;
  }
  const size_t take = std::min<size_t>(begin, 64);
  consumed_end_ += tail_.substr(begin - take, take);
  if (consumed_end_.size() > 64) consumed_end_.erase(0, consumed_end_.size() - 64);
  tail_.erase(0, begin);
  return true;
}

void MetricsFile::take_line(std::string line) {
  ++lines_;
  // A byte-order mark before the first record: nlohmann skips it, a browser's JSON.parse does not.
  if (lines_ == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);
  if (line.find_first_not_of(" \t\r") == std::string::npos) return;  // blank
  nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  std::string why = record.is_discarded() ? "not valid JSON (a line torn by a crash?)" : check_metrics_record(record);
  if (why.empty()) {
    records_.push_back(line);
  } else {
    skipped_.push_back({lines_, why});
  }
}

double MetricsFile::seconds_since_modified() const {
  struct stat info {};
  if (::stat(path_.c_str(), &info) != 0) return -1;
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const double now_s = std::chrono::duration<double>(now).count();
  return now_s - (static_cast<double>(info.st_mtim.tv_sec) + 1e-9 * static_cast<double>(info.st_mtim.tv_nsec));
}

std::string MetricsFile::records_json(size_t from) const {
  std::string out = "[";
  for (size_t i = from; i < records_.size(); ++i) {
    if (i > from) out += ',';
    out += records_[i];
  }
  out += ']';
  return out;
}

std::vector<std::string> MetricsFile::notes(size_t limit) const {
  std::vector<std::string> out;
  for (size_t i = 0; i < skipped_.size() && i < limit; ++i) {
    out.push_back(path_ + " line " + std::to_string(skipped_[i].line) + " skipped: " + skipped_[i].reason);
  }
  if (skipped_.size() > limit) {
    out.push_back(path_ + ": " + std::to_string(skipped_.size() - limit) + " more lines skipped");
  }
  if (!tail_.empty()) {
    out.push_back(path_ + " ends in an incomplete line (" + std::to_string(tail_.size()) +
                  " bytes): still being written, or torn when the run was killed");
  }
  return out;
}

}  // namespace nextn::dashboard
