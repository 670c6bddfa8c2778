// jemalloc's per-thread peak, as bench train reads it: an allocation raises it by its size, a reset
// brings it back to what is live.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "nextn/util/allocation_peak.h"

namespace nextn {
namespace {

TEST(AllocationPeak, SeesATensorsBytesAndForgetsThemAfterAReset) {
  if (!allocation_peak_available()) GTEST_SKIP() << "not linked with jemalloc >= 5.3";
  constexpr int64_t kBytes = 64 << 20;
  reset_allocation_peak();
  const int64_t before = read_allocation_peak();
  {
    auto t = torch::ones({kBytes / 4}, torch::kFloat);  // touched, so allocated for real
    EXPECT_GE(read_allocation_peak() - before, kBytes);
    EXPECT_LT(read_allocation_peak() - before, kBytes + (8 << 20));
  }
  reset_allocation_peak();
  EXPECT_LT(read_allocation_peak(), kBytes / 2) << "the freed tensor still counts after a reset";
}

}  // namespace
}  // namespace nextn
