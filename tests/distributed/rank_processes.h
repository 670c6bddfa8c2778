// Runs a test body as the ranks of a distributed job: the test executable starts copies of
// itself, each filtered to one worker test and given RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
// and a shared directory (NEXTN_TEST_DIR) in its environment. Worker tests skip themselves when
// run without those variables (as in the suite's own pass).
#pragma once

#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "nextn/distributed/cluster.h"
#include "nextn/distributed/local_launcher.h"
#include "nextn/io/atomic_file.h"

extern char** environ;

namespace nextn::testing {

inline bool is_rank_worker() { return std::getenv("NEXTN_TEST_DIR") != nullptr; }
inline std::string worker_dir() { return std::getenv("NEXTN_TEST_DIR"); }

struct RankRun {
  int status = -1;  // exit status, -1 when it did not exit normally
  std::string output;
};

// Starts `world` copies of this executable running only `test` (e.g. "RankWorker.MoeLayer"),
// waits for all (killing them after `timeout`), and returns each rank's status and output.
inline std::vector<RankRun> run_ranks(const std::string& test, int world, const std::string& dir,
                                      const std::vector<std::string>& extra_env = {},
                                      std::chrono::seconds timeout = std::chrono::seconds(120)) {
  const int port = dist::free_local_port();
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world; ++rank) {
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
    env.push_back("RANK=" + std::to_string(rank));
    env.push_back("WORLD_SIZE=" + std::to_string(world));
    env.push_back("LOCAL_RANK=" + std::to_string(rank));
    env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(world));
    env.push_back("MASTER_ADDR=127.0.0.1");
    env.push_back("MASTER_PORT=" + std::to_string(port));
    env.push_back("NEXTN_TEST_DIR=" + dir);
    for (const auto& e : extra_env) env.push_back(e);
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string exe = "/proc/self/exe", filter = "--gtest_filter=" + test, log = dir + "/rank" + std::to_string(rank) + ".log";
    std::vector<char*> argv = {exe.data(), filter.data(), nullptr};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    pid_t pid = -1;
    EXPECT_EQ(posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv.data(), envp.data()), 0);
    posix_spawn_file_actions_destroy(&actions);
    pids.push_back(pid);
  }
  std::vector<RankRun> runs(world);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (int rank = 0; rank < world; ++rank) {
    int status = 0;
    while (waitpid(pids[rank], &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        for (pid_t p : pids) kill(p, SIGKILL);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    runs[rank].status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    runs[rank].output = io::read_file(dir + "/rank" + std::to_string(rank) + ".log");
  }
  return runs;
}

// A worker's cluster, from the variables run_ranks sets (collectives time out after 30 s).
inline std::unique_ptr<dist::Cluster> worker_cluster(int expert_parallel) {
  dist::ClusterOptions options;
  options.expert_parallel = expert_parallel;
  options.timeout = std::chrono::seconds(30);
  return std::make_unique<dist::Cluster>(dist::detect_launch_env(), options);
}

inline void expect_all_passed(const std::vector<RankRun>& runs) {
  for (size_t r = 0; r < runs.size(); ++r) {
    EXPECT_EQ(runs[r].status, 0) << "rank " << r << " output:\n" << runs[r].output;
    EXPECT_EQ(runs[r].output.find("[  SKIPPED ]"), std::string::npos) << "rank " << r << " skipped:\n" << runs[r].output;
    EXPECT_NE(runs[r].output.find("[  PASSED  ] 1 test"), std::string::npos) << "rank " << r << ":\n" << runs[r].output;
  }
}

}  // namespace nextn::testing
