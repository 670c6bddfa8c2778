// How much memory this process may still take, to refuse up front what cannot fit (a config of
// 10^12 parameters) with the sizes named, instead of failing inside an allocation.
#pragma once

#include <cstdint>
#include <string>

namespace nextn {

// MemAvailable of /proc/meminfo, or less when the process's cgroup (v2) limit leaves less; -1
// when neither can be read.
int64_t available_memory_bytes();

// "21.3 GiB", "512 MiB", "4.4 TiB".
std::string format_bytes(double bytes);

// nextn::Error "<what> needs <bytes> of memory, and this machine has <available> available"
// when bytes exceed what is available.
void check_fits_in_memory(double bytes, const std::string& what);

}  // namespace nextn
