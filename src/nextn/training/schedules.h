// Schedules of the training run, all pure functions of the optimizer step so that a resumed run
// recomputes exactly the values the uninterrupted run used.
#pragma once

#include <cstdint>
#include <string>

namespace nextn {

enum class LrShape {
  kCosine,  // linear warmup, then cosine from lr to min_lr over the remaining steps
  kWsd,     // warmup-stable-decay: linear warmup, constant lr, then linear decay to min_lr
};
LrShape lr_shape_from_string(const std::string& name);  // "cosine" | "wsd"
std::string to_string(LrShape shape);

struct LrSchedule {
  LrShape shape = LrShape::kCosine;
  double peak = 1e-3;
  double minimum = 1e-4;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double decay_fraction = 0.2;  // WSD: the last fraction of steps that decays

  // Learning rate of 0-based optimizer step `step`.
  double at(int64_t step) const;
};

// A value that switches once, at a fraction of the run: DeepSeek-V3's MTP weight (0.3, then 0.1
// for the last ~1/3 of tokens) and bias update speed (0.001, then 0 for the last ~3.4%).
struct SwitchSchedule {
  double value = 0.0;
  double late_value = 0.0;
  double switch_fraction = 1.0;  // steps at or after switch_fraction * total use late_value

  double at(int64_t step, int64_t total_steps) const;
};

}  // namespace nextn
