// Shared by the libFuzzer targets of fuzz/: inputs that must go through a file are written to a
// per-process folder in /dev/shm, and an input may only be refused with nextn::Error (a clear
// message naming the file and field). Any other exception escaping nextn's parsers (a JSON
// library's, libtorch's, the standard library's) is a finding: the harness aborts on it.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <typeinfo>

#include "nextn/util/error.h"

namespace nextn::fuzz {

inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    const std::string base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string path = base + "/nextn-fuzz-" + std::to_string(::getpid());
    std::filesystem::create_directories(path);
    static const std::string to_remove = path;
    std::atexit([] { std::filesystem::remove_all(to_remove); });
    return path;
  }();
  return dir;
}

inline std::string write_scratch_file(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

// Runs `body`; a nextn::Error is a refusal (fine), anything else aborts with its type and text.
template <typename Body>
void expect_clean_refusal(Body&& body) {
  try {
    body();
  } catch (const Error&) {
    // refused with nextn's own message: what the parsers promise
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: an exception other than nextn::Error escaped: %s: %s\n", typeid(e).name(), e.what());
    std::abort();
  }
}

}  // namespace nextn::fuzz
