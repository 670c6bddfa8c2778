// The train/validation split, by document: document i (0-based, in corpus order) is a
// validation document when floor((i+1) f) > floor(i f), i.e. every 1/f-th document. Exact and
// deterministic (integer arithmetic on f in parts per million), the same in every pass over the
// corpus, and it needs no state, so streaming stays streaming.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "nextn/util/error.h"

namespace nextn::data {

enum class Split { kTrain, kValidation };

inline std::string to_string(Split split) { return split == Split::kTrain ? "train" : "validation"; }

inline Split split_from_string(const std::string& name) {
  if (name == "train") return Split::kTrain;
  if (name == "validation" || name == "val") return Split::kValidation;
  fail("unknown split '", name, "' (train or validation)");
}

inline int64_t fraction_to_ppm(double fraction) {
  NEXTN_CHECK(fraction >= 0.0 && fraction < 1.0, "validation fraction ", fraction, " must be in [0, 1)");
  return std::llround(fraction * 1e6);
}

inline Split split_of_document(int64_t index, int64_t validation_ppm) {
  int64_t before = (index * validation_ppm) / 1000000;
  int64_t after = ((index + 1) * validation_ppm) / 1000000;
  return after > before ? Split::kValidation : Split::kTrain;
}

}  // namespace nextn::data
