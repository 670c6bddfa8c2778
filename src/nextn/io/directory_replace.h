// Replacing a whole directory in one step. The new contents are written into a temporary sibling
// (same file system), fsynced, and exchanged with the old directory by a single rename, so that a
// reader, or a crash at any instant, finds at the path either the complete old directory or the
// complete new one, never a mixture of the two.
//
// Temporaries beside the target, named after it and after the process that made them:
//   .<name>.tmp.<pid>   the new contents being written; after the exchange, the old contents
//                       being deleted
//   .<name>.old.<pid>   only where the file system cannot exchange two directories (NFS): the old
//                       directory, set aside for the instant between two renames
// Those of a process that died (a kill, a power cut) are removed by the next replacement of the
// same directory; a set-aside old directory whose target is missing is first renamed back.
#pragma once

#include <functional>
#include <string>

namespace nextn::io {

// Writes the new contents with `write_contents(temporary_dir)` into a fresh, empty temporary
// directory, then puts that directory in place of `target` (created, with its parents, if absent;
// a symbolic link is followed, so that the directory it points to is replaced and the link kept).
// If write_contents throws, or anything fails before the exchange, `target` is left exactly as it
// was, the temporary is removed and the error is rethrown.
void replace_directory(const std::string& target, const std::function<void(const std::string&)>& write_contents);

// Whether `entry_name` is one of the temporaries above, of any process, for a target named
// `target_name` (the last component of its path).
bool is_replacement_temporary(const std::string& target_name, const std::string& entry_name);

}  // namespace nextn::io
