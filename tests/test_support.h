// Helpers shared by the test executables.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "nextn/config/model_config.h"
#include "nextn/io/atomic_file.h"

extern char** environ;

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

// ---- real processes, for kills at chosen moments ------------------------------------------------

// Starts the nextn executable with `args`, its stdout and stderr going to `log_path`.
inline pid_t spawn_nextn(const std::vector<std::string>& args, const std::string& log_path) {
  std::vector<std::string> all = {NEXTN_BINARY_PATH};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  EXPECT_EQ(rc, 0) << "cannot start " << argv[0];
  return pid;
}

// The wait status of `pid` (WIFEXITED, WIFSIGNALED, ...).
inline int wait_for_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

// Whether `path` appeared within `seconds`; false as soon as `pid` has exited without it.
inline bool wait_for_path(const std::string& path, pid_t pid, double seconds) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (std::filesystem::exists(path)) return true;
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return std::filesystem::exists(path);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

}  // namespace nextn::testing
