#include "nextn/training/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "nextn/util/error.h"

namespace nextn {
namespace {

// What the holder wrote into the lock file ("pid P on host H"), for the refusal's message.
std::string holder_of(int fd) {
  char text[256] = {};
  const ssize_t n = ::pread(fd, text, sizeof text - 1, 0);
  std::string holder = n > 0 ? std::string(text, static_cast<size_t>(n)) : std::string();
  while (!holder.empty() && (holder.back() == '\n' || holder.back() == '\0')) holder.pop_back();
  return holder.empty() ? "another process" : holder;
}

}  // namespace

RunDirectoryLock::RunDirectoryLock(const std::string& run_dir) {
  const std::string path = (std::filesystem::path(run_dir) / ".lock").string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  NEXTN_CHECK(fd_ >= 0, "cannot open '", path, "': ", errno_text());
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    const std::string holder = holder_of(fd_);
    ::close(fd_);
    fd_ = -1;
    NEXTN_CHECK(error != EWOULDBLOCK, "run directory '", run_dir, "' is in use: ", holder,
                " is training into it (a run has one writer; wait for it to end or stop it)");
    fail("cannot lock '", path, "': ", std::strerror(error));
  }
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::string holder = "nextn pid " + std::to_string(::getpid()) + " on host " + host + "\n";
  const bool named = ::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, holder.data(), holder.size(), 0) >= 0;
  (void)named;  // the text only names the holder in a refusal; the lock itself is what excludes
}

RunDirectoryLock::~RunDirectoryLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the descriptor releases the lock
}

}  // namespace nextn
