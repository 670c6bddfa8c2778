// Helpers shared by the tests of src/nextn/io: scratch directories, raw files written with plain
// stdio (independent of the code under test), and error expectations.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <string>

#include "nextn/util/error.h"

namespace nextn::io::test {

// A new directory under the system temp dir, removed with everything in it at destruction. Names
// carry the process id, as ctest runs test cases as parallel processes.
class ScratchDir {
 public:
  ScratchDir() {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string test = info ? cat(info->test_suite_name(), ".", info->name()) : "scratch";
    dir_ = std::filesystem::temp_directory_path() / cat("nextn_io_", test, "_", ::getpid(), "_", counter++);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  std::string path() const { return dir_.string(); }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }

 private:
  std::filesystem::path dir_;
};

// Writes `bytes` to `path` with fopen/fwrite, bypassing nextn's writers.
inline void write_raw_file(const std::string& path, const std::string& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << "cannot create " << path;
  ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
  ASSERT_EQ(std::fclose(f), 0);
}

inline std::string read_raw_file(const std::string& path) {
  std::string bytes;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return bytes;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0) bytes.append(buffer, n);
  std::fclose(f);
  return bytes;
}

// `value` as 8 little-endian bytes, built byte by byte.
inline std::string u64_le(uint64_t value) {
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  return bytes;
}

// A safetensors file assembled by hand: length prefix, header text as given, data bytes.
inline std::string safetensors_bytes(const std::string& header, const std::string& data) {
  return u64_le(header.size()) + header + data;
}

// The raw bytes of a contiguous CPU tensor.
inline std::string tensor_bytes(const torch::Tensor& tensor) {
  torch::Tensor t = tensor.contiguous();
  if (t.numel() == 0) return std::string();
  return std::string(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
}

// Runs `action` and expects a nextn::Error whose message contains every fragment.
template <typename Action>
void expect_error(Action&& action, std::initializer_list<std::string> fragments) {
  try {
    action();
    ADD_FAILURE() << "expected a nextn::Error mentioning '" << *fragments.begin() << "'";
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const std::string& fragment : fragments) {
      EXPECT_NE(message.find(fragment), std::string::npos) << "message '" << message << "' lacks '" << fragment << "'";
    }
  }
}

}  // namespace nextn::io::test
