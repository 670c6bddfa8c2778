// One writer per run directory: the training process that writes a run's checkpoints and metrics
// (rank 0 of a distributed run) holds an exclusive lock on `<run>/.lock` for as long as it lives.
// A second job on the same directory (a `--resume` while an orphaned or forgotten run still
// trains) is refused instead of interleaving checkpoints and metrics with it. The kernel drops
// the lock with its process, however that process ends: nothing is left to clean up after a crash.
#pragma once

#include <string>

namespace nextn {

class RunDirectoryLock {
 public:
  // Takes the lock; nextn::Error naming the holder when another process has it.
  explicit RunDirectoryLock(const std::string& run_dir);
  ~RunDirectoryLock();
  RunDirectoryLock(const RunDirectoryLock&) = delete;
  RunDirectoryLock& operator=(const RunDirectoryLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace nextn
