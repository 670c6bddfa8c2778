#include "nextn/io/directory_replace.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>  // renameat2, RENAME_EXCHANGE (glibc 2.28)
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <filesystem>
#include <optional>
#include <system_error>
#include <vector>

#include "nextn/io/atomic_file.h"
#include "nextn/util/error.h"

namespace nextn::io {
namespace {

namespace fs = std::filesystem;

constexpr const char* kNewContents = ".tmp.";
constexpr const char* kSetAside = ".old.";

std::string temporary_name(const std::string& target_name, const char* kind, pid_t pid) {
  return cat(".", target_name, kind, pid);
}

// The pid in ".<target_name><kind><pid>", when `entry_name` is such a name.
std::optional<pid_t> pid_of_temporary(const std::string& target_name, const char* kind, const std::string& entry_name) {
  const std::string prefix = cat(".", target_name, kind);
  if (entry_name.size() <= prefix.size() || entry_name.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  const std::string digits = entry_name.substr(prefix.size());
  const bool all_digits = std::all_of(digits.begin(), digits.end(), [](unsigned char c) { return std::isdigit(c); });
  if (!all_digits || digits.size() > 9) return std::nullopt;  // 9 digits: above any pid_max
  return static_cast<pid_t>(std::stol(digits));
}

// EPERM: the process exists but belongs to another user.
bool process_is_alive(pid_t pid) { return ::kill(pid, 0) == 0 || errno == EPERM; }

// The directory the replacement is about: absolute, through symbolic links, without a trailing
// separator ("out/" names "out").
fs::path resolved_target(const std::string& target) {
  fs::path path = fs::weakly_canonical(fs::absolute(target));
  if (!path.has_filename()) path = path.parent_path();
  return path;
}

void remove_tree(const fs::path& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  NEXTN_CHECK(!ec, "cannot remove '", path.string(), "': ", ec.message());
}

void rename_path(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  NEXTN_CHECK(!ec, "cannot rename '", from.string(), "' to '", to.string(), "': ", ec.message());
}

// Temporaries of replacements of `target` whose process died. A set-aside old directory goes back
// first when the target is missing (that process died between its two renames): the target is
// then the old directory again, as if the replacement had never started.
void clean_up_after_dead_replacements(const fs::path& target) {
  const std::string name = target.filename().string();
  std::vector<fs::path> set_aside, new_contents;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(target.parent_path(), ec)) {
    const std::string entry_name = entry.path().filename().string();
    for (const char* kind : {kSetAside, kNewContents}) {
      const std::optional<pid_t> pid = pid_of_temporary(name, kind, entry_name);
      if (!pid || *pid == ::getpid() || process_is_alive(*pid)) continue;
      (kind == kSetAside ? set_aside : new_contents).push_back(entry.path());
    }
  }
  for (const fs::path& old_directory : set_aside) {
    if (!fs::exists(fs::symlink_status(target))) {
      rename_path(old_directory, target);
    } else {
      remove_tree(old_directory);
    }
  }
  for (const fs::path& temporary : new_contents) remove_tree(temporary);
  if (!set_aside.empty() || !new_contents.empty()) fsync_directory(target.parent_path().string());
}

// Swaps two paths in one step (renameat2 RENAME_EXCHANGE). False when the file system or kernel
// cannot (EINVAL: NFS and others; ENOSYS: before Linux 3.15).
bool exchange_paths(const fs::path& a, const fs::path& b) {
  if (::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0) return true;
  NEXTN_CHECK(errno == EINVAL || errno == ENOSYS, "cannot exchange '", a.string(), "' with '", b.string(),
              "': ", errno_text());
  return false;
}

// Puts the complete `staging` directory at `target`. Where an old target existed, its contents end
// up in `staging` (exchanged) or in `set_aside` (two renames, when exchanging is impossible).
void swap_into_place(const fs::path& staging, const fs::path& target, const fs::path& set_aside) {
  if (!fs::exists(fs::symlink_status(target))) {
    rename_path(staging, target);
  } else if (!exchange_paths(staging, target)) {
    rename_path(target, set_aside);  // the path is missing until the next rename: see the header
    try {
      rename_path(staging, target);
    } catch (...) {
      std::error_code ignored;
      fs::rename(set_aside, target, ignored);  // the old directory back in place
      throw;
    }
  }
}

}  // namespace

bool is_replacement_temporary(const std::string& target_name, const std::string& entry_name) {
  return pid_of_temporary(target_name, kNewContents, entry_name).has_value() ||
         pid_of_temporary(target_name, kSetAside, entry_name).has_value();
}

void replace_directory(const std::string& target_path, const std::function<void(const std::string&)>& write_contents) {
  const fs::path target = resolved_target(target_path);
  const fs::path parent = target.parent_path();
  std::error_code ec;
  fs::create_directories(parent, ec);
  NEXTN_CHECK(!ec, "cannot create directory '", parent.string(), "': ", ec.message());
  NEXTN_CHECK(!fs::exists(target) || fs::is_directory(target), "'", target.string(), "' exists and is not a directory");
  clean_up_after_dead_replacements(target);

  const std::string name = target.filename().string();
  const fs::path staging = parent / temporary_name(name, kNewContents, ::getpid());
  const fs::path set_aside = parent / temporary_name(name, kSetAside, ::getpid());
  remove_tree(staging);  // only this process uses names with its pid
  fs::create_directory(staging, ec);
  NEXTN_CHECK(!ec, "cannot create directory '", staging.string(), "': ", ec.message());
  try {
    write_contents(staging.string());
    fsync_files_and_directory(staging.string());
    swap_into_place(staging, target, set_aside);
  } catch (...) {
    fs::remove_all(staging, ec);  // the new contents; the old directory is untouched
    throw;
  }
  fsync_directory(parent.string());
  // The replacement is done; what is left is the old directory. Should its removal fail, the next
  // replacement removes it (this process will have ended).
  fs::remove_all(staging, ec);
  fs::remove_all(set_aside, ec);
}

}  // namespace nextn::io
