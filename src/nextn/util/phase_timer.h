// Wall-clock time spent in named phases (MoE routing, dispatch, expert compute, ...), collected
// only while a benchmark enables it: when disabled a ScopedPhase costs one branch.
#pragma once

#include <chrono>
#include <map>
#include <string>

namespace nextn {

class PhaseTimes {
 public:
  static PhaseTimes& global();

  void enable(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }
  void add(const char* phase, double seconds) { seconds_[phase] += seconds; }
  void reset() { seconds_.clear(); }
  double seconds(const std::string& phase) const;
  const std::map<std::string, double>& all() const { return seconds_; }

 private:
  bool enabled_ = false;
  std::map<std::string, double> seconds_;
};

class ScopedPhase {
 public:
  explicit ScopedPhase(const char* phase) : phase_(PhaseTimes::global().enabled() ? phase : nullptr) {
    if (phase_ != nullptr) start_ = std::chrono::steady_clock::now();
  }
  ~ScopedPhase() {
    if (phase_ != nullptr) {
      PhaseTimes::global().add(phase_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
    }
  }
  ScopedPhase(const ScopedPhase&) = delete;
  ScopedPhase& operator=(const ScopedPhase&) = delete;

 private:
  const char* phase_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace nextn
