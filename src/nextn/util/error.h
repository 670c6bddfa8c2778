// Errors that users see. Every failure a user can cause (a bad file, a bad flag, an inconsistent
// config) is a nextn::Error with a message that names what is wrong; the CLI prints it and exits 1.
#pragma once

#include <cerrno>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>

namespace nextn {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Concatenates anything printable: cat("layer ", 3, " has ", 2.5) == "layer 3 has 2.5".
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(cat(args...));
}

// The text of the current errno, for messages about failed system calls.
inline std::string errno_text() { return std::strerror(errno); }

}  // namespace nextn

// Throws nextn::Error with the concatenated message when `cond` is false.
#define NEXTN_CHECK(cond, ...)         \
  do {                                 \
    if (!(cond)) ::nextn::fail(__VA_ARGS__); \
  } while (0)
