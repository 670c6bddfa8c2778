#include "nextn/util/memory_info.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "nextn/util/error.h"

namespace nextn {
namespace {

// A number from a cgroup file ("max" and unreadable files give -1).
int64_t read_cgroup_value(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text == "max") return -1;
  try {
    return std::stoll(text);
  } catch (const std::exception&) {
    return -1;
  }
}

// The process's cgroup v2 directory ("0::/path" in /proc/self/cgroup).
std::string cgroup_dir() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("0::", 0) == 0) return "/sys/fs/cgroup" + line.substr(3);
  }
  return "";
}

}  // namespace

int64_t available_memory_bytes() {
  int64_t available = -1;
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    std::istringstream fields(line);
    std::string key;
    int64_t kib = 0;
    if (fields >> key >> kib && key == "MemAvailable:") available = kib * 1024;
  }
  const std::string dir = cgroup_dir();
  if (!dir.empty()) {
    const int64_t limit = read_cgroup_value(dir + "/memory.max");
    const int64_t used = read_cgroup_value(dir + "/memory.current");
    if (limit >= 0 && used >= 0) {
      const int64_t left = std::max<int64_t>(0, limit - used);
      available = available < 0 ? left : std::min(available, left);
    }
  }
  return available;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int unit = 0;
  while (std::fabs(bytes) >= 1024 && unit < 6) {
    bytes /= 1024;
    ++unit;
  }
  char text[64];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", bytes, units[unit]);
  return text;
}

void check_fits_in_memory(double bytes, const std::string& what) {
  const int64_t available = available_memory_bytes();
  if (available < 0) return;  // nothing to compare with
  NEXTN_CHECK(bytes <= static_cast<double>(available), what, " needs ", format_bytes(bytes),
              " of memory, and this machine has ", format_bytes(static_cast<double>(available)), " available");
}

}  // namespace nextn
