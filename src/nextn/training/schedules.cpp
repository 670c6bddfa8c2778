#include "nextn/training/schedules.h"

#include <algorithm>
#include <cmath>

#include "nextn/util/error.h"

namespace nextn {

LrShape lr_shape_from_string(const std::string& name) {
  if (name == "cosine") return LrShape::kCosine;
  if (name == "wsd") return LrShape::kWsd;
  fail("unknown learning-rate schedule '", name, "' (expected cosine or wsd)");
}

std::string to_string(LrShape shape) { return shape == LrShape::kCosine ? "cosine" : "wsd"; }

double LrSchedule::at(int64_t step) const {
  if (warmup_steps > 0 && step < warmup_steps) {
    return peak * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  }
  const int64_t after_warmup = std::max<int64_t>(total_steps - warmup_steps, 1);
  const double progress = std::clamp(static_cast<double>(step - warmup_steps) / after_warmup, 0.0, 1.0);
  if (shape == LrShape::kCosine) {
    return minimum + 0.5 * (peak - minimum) * (1.0 + std::cos(M_PI * progress));
  }
  const double decay_start = 1.0 - decay_fraction;
  if (progress < decay_start || decay_fraction <= 0.0) return peak;
  return peak - (peak - minimum) * (progress - decay_start) / decay_fraction;
}

double SwitchSchedule::at(int64_t step, int64_t total_steps) const {
  return static_cast<double>(step) >= switch_fraction * static_cast<double>(total_steps) ? late_value : value;
}

}  // namespace nextn
