// The statistic every benchmark reports: the median of its timed samples (robust to the outliers
// a shared machine produces).
#pragma once

#include <algorithm>
#include <vector>

namespace nextn {

inline double median(std::vector<double> samples) {
  if (samples.empty()) return 0.0;
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

}  // namespace nextn
