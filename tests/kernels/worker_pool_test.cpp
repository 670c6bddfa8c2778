// The kernels' helper threads: every part runs exactly once, on more than one thread, after the
// helpers went to sleep too; concurrent callers, nested calls, a failing part and a forked child
// are handled.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "nextn/kernels/worker_pool.h"

namespace nextn::kernels {
namespace {

// Runs `parts` parts and returns how often each ran.
std::vector<int> run_counts(int parts) {
  std::vector<std::atomic<int>> counts(parts);
  run_in_parts(parts, [&](int p) { counts[p].fetch_add(1); });
  std::vector<int> result;
  for (auto& c : counts) result.push_back(c.load());
  return result;
}

TEST(WorkerPool, EveryPartRunsExactlyOnce) {
  for (int parts : {1, 2, 3, 5, 2, 1, 4}) {
    EXPECT_EQ(run_counts(parts), std::vector<int>(parts, 1)) << parts << " parts";
  }
  for (int round = 0; round < 2000; ++round) {  // back to back, as in decoding
    ASSERT_EQ(run_counts(2), std::vector<int>(2, 1)) << "round " << round;
  }
}

TEST(WorkerPool, PartsRunOnHelperThreadsAndTheCaller) {
  std::mutex mutex;
  std::set<std::thread::id> threads;
  std::atomic<int> arrived{0};
  run_in_parts(3, [&](int) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      threads.insert(std::this_thread::get_id());
    }
    // Every part waits for the others: only possible if they run at the same time.
    arrived.fetch_add(1);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (arrived.load() < 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  });
  EXPECT_EQ(arrived.load(), 3);
  EXPECT_EQ(threads.size(), 3u);
  EXPECT_EQ(threads.count(std::this_thread::get_id()), 1u);
}

TEST(WorkerPool, SleepingHelpersWakeUpForTheNextJob) {
  EXPECT_EQ(run_counts(2), std::vector<int>(2, 1));
  std::this_thread::sleep_for(std::chrono::duration<double>(20 * kSpinSeconds));  // helpers asleep now
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ(run_counts(3), std::vector<int>(3, 1));
    std::this_thread::sleep_for(std::chrono::duration<double>(3 * kSpinSeconds));
  }
}

TEST(WorkerPool, ConcurrentCallersEachRunAllTheirParts) {
  std::vector<std::thread> callers;
  std::atomic<int> wrong{0};
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&, c] {
      for (int round = 0; round < 300; ++round) {
        if (run_counts(2 + (c + round) % 3) != std::vector<int>(2 + (c + round) % 3, 1)) wrong.fetch_add(1);
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(WorkerPool, AFailingPartIsRethrownAfterTheOthersFinished) {
  std::atomic<int> finished{0};
  EXPECT_THROW(run_in_parts(3,
                            [&](int p) {
                              if (p == 0) throw std::runtime_error("part 0 failed");
                              std::this_thread::sleep_for(std::chrono::milliseconds(5));
                              finished.fetch_add(1);
                            }),
               std::runtime_error);
  EXPECT_EQ(finished.load(), 2);  // the helpers' parts completed before the caller returned
  EXPECT_EQ(run_counts(3), std::vector<int>(3, 1));  // and the pool still works

  // A helper's exception reaches the caller too, once.
  EXPECT_THROW(run_in_parts(2,
                            [](int p) {
                              if (p == 1) throw std::runtime_error("part 1 failed");
                            }),
               std::runtime_error);
  EXPECT_EQ(run_counts(2), std::vector<int>(2, 1));
}

TEST(WorkerPool, APartMayRunPartsItself) {
  // Decoding's expert jobs run as parts and call the kernel, which may ask for parts again: the
  // inner parts run on the part's own thread, each exactly once, on the caller and on a helper.
  std::mutex mutex;
  std::vector<std::pair<int, int>> inner;  // (outer, inner) part pairs that ran
  std::set<std::thread::id> outer_threads;
  for (int round = 0; round < 50; ++round) {
    inner.clear();
    std::atomic<bool> outer_1_started{false};
    run_in_parts(2, [&](int outer) {
      const auto self = std::this_thread::get_id();
      if (outer == 1) outer_1_started.store(true);
      // Part 0 waits for part 1 to start: a caller done first would run part 1 itself.
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!outer_1_started.load() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
      run_in_parts(3, [&](int p) {
        std::lock_guard<std::mutex> lock(mutex);
        EXPECT_EQ(std::this_thread::get_id(), self);
        inner.push_back({outer, p});
      });
      std::lock_guard<std::mutex> lock(mutex);
      outer_threads.insert(self);
    });
    std::sort(inner.begin(), inner.end());
    ASSERT_EQ(inner, (std::vector<std::pair<int, int>>{{0, 0}, {0, 1}, {0, 2}, {1, 0}, {1, 1}, {1, 2}}));
  }
  EXPECT_EQ(outer_threads.size(), 2u);  // the outer parts did run on two threads
  EXPECT_EQ(run_counts(3), std::vector<int>(3, 1));  // and the pool still shares parts afterwards
}

TEST(WorkerPool, AForkedChildRunsItsPartsWithoutTheParentsHelpers) {
  EXPECT_EQ(run_counts(2), std::vector<int>(2, 1));  // the parent's helpers exist now
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    alarm(10);  // waiting for a helper that does not exist in the child would hang: fail instead
    _exit(run_counts(3) == std::vector<int>(3, 1) ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
}

// `generate --threads 100000` used to abort: a helper whose thread the system refused was kept,
// and the pool's destructor joined it. Now the pool runs with the helpers it could start, says so,
// and the process exits cleanly. The child is a fresh process (threadsafe death test) whose address
// space is capped just above its size, so that no thread stack (8 MiB) fits.
TEST(WorkerPool, AThreadTheSystemRefusesLeavesEveryPartRunAndTheExitClean) {
#if defined(__SANITIZE_ADDRESS__)
  // The refusal comes from capping the address space, where AddressSanitizer's own allocations
  // fail first (its thread stacks): the run dies in the sanitizer, not in the pool.
  GTEST_SKIP() << "address-space cap and AddressSanitizer do not mix";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto capped_run = [] {
    std::ifstream statm("/proc/self/statm");
    unsigned long pages = 0;
    statm >> pages;
    const rlim_t size = pages * static_cast<rlim_t>(sysconf(_SC_PAGESIZE));
    rlimit limit{size + (2 << 20), size + (2 << 20)};
    if (setrlimit(RLIMIT_AS, &limit) != 0) std::exit(3);
    std::vector<int> counts;
    for (int round = 0; round < 3; ++round) {
      counts = run_counts(6);
      if (counts != std::vector<int>(6, 1)) std::exit(4);
    }
    std::exit(0);  // the pool's destructor runs at exit: it must not join a thread never started
  };
  EXPECT_EXIT(capped_run(), ::testing::ExitedWithCode(0), "cannot start a kernel helper thread");
}

// A helper that has not started its part when the caller is done with its own (its core held by
// another thread, as a server's request threads hold them) is not waited for: the caller runs the
// part. On one core the caller nearly always finishes first. The child is a fresh process
// (threadsafe death test) whose threads, the helpers included, all share that core.
TEST(WorkerPool, APartNoHelperStartedRunsOnTheCaller) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto one_core_run = [] {
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) std::_Exit(3);
    int cpu = 0;
    while (!CPU_ISSET(cpu, &allowed)) ++cpu;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0) std::_Exit(3);
    int on_caller = 0;
    for (int round = 0; round < 200; ++round) {
      std::atomic<int> runs{0};
      std::thread::id part_1_thread;
      run_in_parts(2, [&](int p) {
        runs.fetch_add(1);
        if (p == 1) part_1_thread = std::this_thread::get_id();
      });
      if (runs.load() != 2) std::_Exit(2);
      if (part_1_thread == std::this_thread::get_id()) ++on_caller;
    }
    std::_Exit(on_caller > 0 ? 0 : 1);
  };
  EXPECT_EXIT(one_core_run(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace nextn::kernels
