// One writer per run directory (training/run_lock.h): a second lock is refused, naming the holder,
// for as long as the first lives; the first's end frees the directory.
#include <gtest/gtest.h>

#include <unistd.h>

#include <optional>

#include "nextn/training/run_lock.h"
#include "nextn/util/error.h"
#include "test_support.h"

namespace nextn {
namespace {

TEST(RunDirectoryLock, ASecondWriterIsRefusedUntilTheFirstEnds) {
  testing::TempDir dir("run_lock");
  std::optional<RunDirectoryLock> first;
  first.emplace(dir.path());
  try {
    RunDirectoryLock second(dir.path());
    FAIL() << "a second lock was taken";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("'" + dir.path() + "' is in use"), std::string::npos) << message;
    EXPECT_NE(message.find("nextn pid " + std::to_string(::getpid())), std::string::npos) << message;
  }
  first.reset();
  EXPECT_NO_THROW(RunDirectoryLock{dir.path()});
  EXPECT_THROW(RunDirectoryLock{dir.file("missing/deeper")}, Error);  // no directory: a clear error
}

}  // namespace
}  // namespace nextn
