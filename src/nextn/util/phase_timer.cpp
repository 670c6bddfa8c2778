#include "nextn/util/phase_timer.h"

namespace nextn {

PhaseTimes& PhaseTimes::global() {
  static PhaseTimes times;
  return times;
}

double PhaseTimes::seconds(const std::string& phase) const {
  auto it = seconds_.find(phase);
  return it == seconds_.end() ? 0.0 : it->second;
}

}  // namespace nextn
