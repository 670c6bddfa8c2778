#include "nextn/inference/stop_strings.h"

#include <algorithm>

#include "nextn/util/error.h"

namespace nextn::inference {

StopStringFilter::StopStringFilter(std::vector<std::string> stop_strings) : stops_(std::move(stop_strings)) {
  for (const auto& s : stops_) NEXTN_CHECK(!s.empty(), "a stop string must not be empty");
}

std::string StopStringFilter::push(const std::string& text, bool& stopped) {
  if (stopped_) {
    stopped = true;
    return "";
  }
  pending_ += text;
  // The earliest complete match wins.
  size_t match = std::string::npos;
  for (const auto& s : stops_) match = std::min(match, pending_.find(s));
  if (match != std::string::npos) {
    stopped_ = stopped = true;
    std::string out = pending_.substr(0, match);
    pending_.clear();
    return out;
  }
  // Hold back the longest suffix of pending_ that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const auto& s : stops_) {
    for (size_t n = std::min(s.size() - 1, pending_.size()); n > hold; --n) {
      if (pending_.compare(pending_.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
    }
  }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  stopped = false;
  return out;
}

std::string StopStringFilter::flush() {
  std::string out;
  out.swap(pending_);
  return stopped_ ? std::string() : out;
}

}  // namespace nextn::inference
