#include "nextn/util/allocation_peak.h"

#include <dlfcn.h>

#include <cstddef>

namespace nextn {
namespace {

using Mallctl = int (*)(const char*, void*, size_t*, void*, size_t);

Mallctl mallctl_function() {
  static const Mallctl function = reinterpret_cast<Mallctl>(::dlsym(RTLD_DEFAULT, "mallctl"));
  return function;
}

}  // namespace

bool allocation_peak_available() {
  Mallctl mallctl = mallctl_function();
  if (mallctl == nullptr) return false;
  uint64_t peak = 0;
  size_t size = sizeof(peak);
  return mallctl("thread.peak.read", &peak, &size, nullptr, 0) == 0;
}

void reset_allocation_peak() {
  if (Mallctl mallctl = mallctl_function()) mallctl("thread.peak.reset", nullptr, nullptr, nullptr, 0);
}

int64_t read_allocation_peak() {
  Mallctl mallctl = mallctl_function();
  if (mallctl == nullptr) return -1;
  uint64_t peak = 0;
  size_t size = sizeof(peak);
  if (mallctl("thread.peak.read", &peak, &size, nullptr, 0) != 0) return -1;
  return static_cast<int64_t>(peak);
}

}  // namespace nextn
