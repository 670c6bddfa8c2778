// Counts and times the ATen operators a piece of code dispatches, through libtorch's
// RecordFunction observers. Only outermost operators are timed (linear, not the mm inside it), so
// the times add up to the time spent inside operators; the rest of a step is host-side overhead
// between them. This is how the decode path's per-op overhead was found and is checked
// (`nextn bench decode --profile`).
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace nextn {

struct OpStats {
  int64_t calls = 0;
  double seconds = 0.0;
};

class OpProfiler {
 public:
  OpProfiler();   // starts observing (one profiler at a time)
  ~OpProfiler();  // stops
  OpProfiler(const OpProfiler&) = delete;
  OpProfiler& operator=(const OpProfiler&) = delete;

  // Outermost operators seen so far, by name.
  std::map<std::string, OpStats> snapshot() const;
  // The `top` operators by time, with calls per `per` (e.g. per decoding step) and totals.
  std::string report(int top, double per, const std::string& per_label) const;

 private:
  uint64_t handle_;
};

}  // namespace nextn
