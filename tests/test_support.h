// Helpers shared by the test executables.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "nextn/config/model_config.h"
#include "nextn/io/atomic_file.h"

namespace nextn::testing {

inline std::string source_path(const std::string& relative) {
  return std::string(NEXTN_SOURCE_DIR) + "/" + relative;
}

inline nlohmann::json preset_json(const std::string& name) {
  return nlohmann::json::parse(io::read_file(source_path("configs/" + name + ".json")));
}

inline ModelConfig tiny_config() { return model_config_from_json(preset_json("tiny")); }

// A fresh, empty directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    path_ = std::filesystem::temp_directory_path() /
            ("nextn_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string path() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  static int& counter() {
    static int n = 0;
    return n;
  }
  std::filesystem::path path_;
};

// Max |a - b| over all elements, as a double.
inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

// Runs the nextn executable with `arguments` (a shell command line's tail); returns its exit code
// and fills `output` with its stdout and stderr (kept in `log_dir`).
inline int run_nextn(const std::string& arguments, const std::string& log_dir, std::string& output) {
  const std::string log = (std::filesystem::path(log_dir) / "command.log").string();
  const std::string command = std::string(NEXTN_BINARY_PATH) + " " + arguments + " > " + log + " 2>&1";
  const int status = std::system(command.c_str());
  output = io::read_file(log);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace nextn::testing
