// Crash-safe file writing: data goes to a temporary file beside the target, is fsynced, and is
// renamed over the target, so a reader (or a crash at any instant) sees the old file or the new
// one, never half of one.
#pragma once

#include <cstddef>
#include <string>

namespace nextn::io {

class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();  // removes the temporary file unless commit() succeeded
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, std::size_t size);
  void write(const std::string& data) { write(data.data(), data.size()); }
  // fsyncs the data, renames it over the target and fsyncs the directory.
  void commit();

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

void write_file_atomic(const std::string& path, const std::string& contents);
std::string read_file(const std::string& path);
bool file_exists(const std::string& path);
// fsync a directory so that renames and creations inside it are durable.
void fsync_directory(const std::string& dir);
// fsync every regular file directly inside `dir`, then `dir` itself: before a directory written
// file by file is renamed into place, so that no file in it can be lost or short after a crash.
void fsync_files_and_directory(const std::string& dir);

}  // namespace nextn::io
