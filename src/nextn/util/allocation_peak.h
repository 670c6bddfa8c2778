// The most memory this thread had allocated at once since a reset: jemalloc's thread.peak
// counters (jemalloc >= 5.3, when it is linked in; src/runtime/jemalloc_conf.cpp). A training step's
// tensors are allocated on the calling thread (libtorch's intra-op pool is kept at one thread), so
// this is the step's peak memory beyond what it started with.
#pragma once

#include <cstdint>

namespace nextn {

// Whether the counters exist (false under glibc malloc, or an older jemalloc).
bool allocation_peak_available();
void reset_allocation_peak();
// Bytes: the peak of (allocated - freed) on this thread since the last reset; -1 when unavailable.
int64_t read_allocation_peak();

}  // namespace nextn
