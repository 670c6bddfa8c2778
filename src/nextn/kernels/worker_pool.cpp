#include "nextn/kernels/worker_pool.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace nextn::kernels {
namespace {

// True on a thread while it runs a part (the caller's part 0 or a helper's): a part that calls
// run_in_parts again runs the inner parts itself (the helpers are busy with the outer call).
thread_local bool running_a_part = false;

// Set in a child of fork(), which has none of its parent's helper threads (pthread_atfork below):
// a flag rather than a getpid() per call, a system call that decoding would pay ~15 times a step.
std::atomic<bool> in_forked_child{false};


// Runs part(index) with running_a_part set; restores the flag even when the part throws.
void run_part(const std::function<void(int)>& part, int index) {
  struct Flag {
    bool saved = running_a_part;
    Flag() { running_a_part = true; }
    ~Flag() { running_a_part = saved; }
  } flag;
  part(index);
}

class WorkerPool {
 public:
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& helper : helpers_) helper->thread.join();
  }

  void run(int parts, const std::function<void(int)>& part) {
    if (running_a_part || parts <= 1) {  // nested in a part, or nothing to share
      for (int p = 0; p < parts; ++p) part(p);
      return;
    }
    std::unique_lock<std::mutex> caller(caller_mutex_, std::try_to_lock);
    // A forked child has none of its parent's helper threads: it runs everything itself.
    if (!caller.owns_lock() || in_forked_child) {
      for (int p = 0; p < parts; ++p) part(p);
      return;
    }
    while (static_cast<int>(helpers_.size()) < parts - 1 && !start_failed_) start_helper();
    // Parts 1..helped go to helpers; the caller runs part 0 and any that no helper could take.
    const int helped = std::min(parts - 1, static_cast<int>(helpers_.size()));
    remaining_.store(helped);
    for (int p = 1; p <= helped; ++p) {
      Helper& helper = *helpers_[p - 1];
      helper.part = &part;
      helper.index = p;
      helper.claimed.store(false);  // publishes part and index to whoever claims the part
      helper.posted.fetch_add(1);
    }
    // A helper about to sleep raised `sleeping_` before it last looked at `posted` (both
    // sequentially consistent), so either it saw the post or this sees it sleeping.
    if (sleeping_.load() > 0) {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      wake_.notify_all();
    }
    // The helpers still hold `part` when one of the caller's parts throws: wait for them first.
    std::exception_ptr first_failure, extra_failure;  // part 0's; the first of parts helped+1..
    for (int p = 0; p < parts; p = p == 0 ? helped + 1 : p + 1) {
      try {
        run_part(part, p);
      } catch (...) {
        if (p == 0) {
          first_failure = std::current_exception();
        } else if (!extra_failure) {
          extra_failure = std::current_exception();
        }
      }
    }
    // A helper that has not yet claimed its part (its core taken by another thread: a server's
    // request threads share the cores with decoding) has it run here instead of being waited for.
    // Parts that share work through a counter find none left and return at once.
    for (int p = 1; p <= helped; ++p) {
      Helper& helper = *helpers_[p - 1];
      if (helper.claimed.exchange(true)) continue;
      try {
        run_part(part, p);
      } catch (...) {
        helper.failure = std::current_exception();
      }
      remaining_.fetch_sub(1);
    }
    while (remaining_.load() > 0) sched_yield();
    for (int p = 1; p <= helped; ++p) {
      if (!first_failure) std::swap(first_failure, helpers_[p - 1]->failure);
      helpers_[p - 1]->failure = nullptr;
    }
    if (!first_failure) first_failure = extra_failure;
    if (first_failure) std::rethrow_exception(first_failure);
  }

 private:
  struct Helper {
    std::thread thread;
    std::atomic<unsigned long> posted{0};
    std::atomic<bool> claimed{true};  // the posted part has been taken (by the helper or the caller)
    const std::function<void(int)>* part = nullptr;
    int index = 0;
    std::exception_ptr failure;  // what its part threw, for the caller to rethrow
  };

  // Starts one more helper. When the system refuses a thread (EAGAIN: the process's thread or
  // memory limit), the pool keeps the helpers it has, says so once, and tries no more: the callers
  // run the remaining parts themselves.
  void start_helper() {
    auto helper = std::make_unique<Helper>();
    Helper* raw = helper.get();
    try {
      helper->thread = std::thread([this, raw] { serve(*raw); });
    } catch (const std::system_error& e) {
      start_failed_ = true;
      std::fprintf(stderr, "nextn: cannot start a kernel helper thread (%s); continuing with %zu helpers\n", e.what(),
                   helpers_.size());
      return;
    }
    helpers_.push_back(std::move(helper));
  }

  void serve(Helper& helper) {
    unsigned long done = 0;
    for (;;) {
      if (!await_post(helper, done)) return;
      done = helper.posted.load();
      if (helper.claimed.exchange(true)) continue;  // the caller ran it: `part` may be gone
      try {
        run_part(*helper.part, helper.index);
      } catch (...) {
        helper.failure = std::current_exception();
      }
      remaining_.fetch_sub(1);
    }
  }

  // Waits until `posted` moves past `done`: polls, yielding the core, for kSpinSeconds, then
  // sleeps. False when the pool is being destroyed.
  bool await_post(Helper& helper, unsigned long done) {
    const auto spin_until = std::chrono::steady_clock::now() + std::chrono::duration<double>(kSpinSeconds);
    int polls = 0;
    while (helper.posted.load() == done) {
      if (++polls % 64 == 0 && std::chrono::steady_clock::now() > spin_until) break;
      sched_yield();
    }
    if (helper.posted.load() != done) return true;
    std::unique_lock<std::mutex> lock(sleep_mutex_);
    sleeping_.fetch_add(1);
    wake_.wait(lock, [&] { return stopping_ || helper.posted.load() != done; });
    sleeping_.fetch_sub(1);
    return !stopping_;
  }

  std::mutex caller_mutex_;         // one caller at a time uses the helpers
  std::vector<std::unique_ptr<Helper>> helpers_;  // each with a running thread
  bool start_failed_ = false;                      // the system refused a thread once
  std::atomic<int> remaining_{0};
  std::atomic<int> sleeping_{0};
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by sleep_mutex_
};

WorkerPool& pool() {
  static WorkerPool instance;
  static const bool registered = [] {
    ::pthread_atfork(nullptr, nullptr, [] { in_forked_child.store(true); });
    return true;
  }();
  (void)registered;
  return instance;
}

}  // namespace

void run_in_parts(int parts, const std::function<void(int)>& part) { pool().run(parts, part); }

}  // namespace nextn::kernels
