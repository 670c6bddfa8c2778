#include "nextn/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "nextn/util/error.h"

namespace nextn::io {
namespace {

std::string parent_dir(const std::string& path) {
  auto parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

}  // namespace

AtomicFileWriter::AtomicFileWriter(std::string path) : path_(std::move(path)) {
  temp_path_ = cat(path_, ".tmp.", ::getpid());
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  NEXTN_CHECK(fd_ >= 0, "cannot create '", temp_path_, "': ", errno_text());
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

void AtomicFileWriter::write(const void* data, std::size_t size) {
  NEXTN_CHECK(fd_ >= 0 && !committed_, "write to closed file '", path_, "'");
  const char* bytes = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd_, bytes, size);
    if (n < 0 && errno == EINTR) continue;
    NEXTN_CHECK(n > 0, "cannot write '", temp_path_, "': ", errno_text());
    bytes += n;
    size -= static_cast<std::size_t>(n);
  }
}

void AtomicFileWriter::commit() {
  NEXTN_CHECK(fd_ >= 0 && !committed_, "commit of closed file '", path_, "'");
  NEXTN_CHECK(::fsync(fd_) == 0, "cannot fsync '", temp_path_, "': ", errno_text());
  int rc = ::close(fd_);
  fd_ = -1;
  NEXTN_CHECK(rc == 0, "cannot close '", temp_path_, "': ", errno_text());
  NEXTN_CHECK(::rename(temp_path_.c_str(), path_.c_str()) == 0, "cannot rename '", temp_path_,
              "' to '", path_, "': ", errno_text());
  committed_ = true;
  fsync_directory(parent_dir(path_));
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFileWriter writer(path);
  writer.write(contents);
  writer.commit();
}

std::string read_file(const std::string& path) {
  struct stat st {};
  // An ifstream opens a directory and reads nothing from it: a prompt file or config given as a
  // directory would read as empty text.
  NEXTN_CHECK(::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode), "'", path, "' is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  NEXTN_CHECK(in.good(), "cannot open '", path, "': ", errno_text());
  std::ostringstream buffer;
  buffer << in.rdbuf();
  NEXTN_CHECK(!in.bad(), "cannot read '", path, "'");
  return buffer.str();
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

void fsync_directory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  NEXTN_CHECK(fd >= 0, "cannot open directory '", dir, "': ", errno_text());
  int rc = ::fsync(fd);
  ::close(fd);
  NEXTN_CHECK(rc == 0, "cannot fsync directory '", dir, "': ", errno_text());
}

void fsync_files_and_directory(const std::string& dir) {
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    const std::string path = entry.path().string();
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    NEXTN_CHECK(fd >= 0, "cannot open '", path, "' to sync it: ", errno_text());
    int rc = ::fsync(fd);
    ::close(fd);
    NEXTN_CHECK(rc == 0, "cannot fsync '", path, "': ", errno_text());
  }
  fsync_directory(dir);
}

}  // namespace nextn::io
