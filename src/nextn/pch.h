// Precompiled header for libnextn and everything that links it. libtorch's headers dominate the
// build time on small machines; compiling them once keeps a full build within minutes.
#pragma once

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>
