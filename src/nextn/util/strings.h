// Small string helpers shared across the project (C++17 has no std::string::ends_with).
#pragma once

#include <string>

namespace nextn {

inline bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace nextn
