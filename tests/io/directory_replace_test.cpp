// Replacing a whole directory in one step: the new contents replace the old ones completely, a
// failure leaves the old ones byte for byte, and the temporaries of processes that died are removed
// (or, for an old directory set aside, put back) by the next replacement.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>

#include "io_test_util.h"
#include "nextn/io/directory_replace.h"

namespace nextn::io {
namespace {

namespace fs = std::filesystem;
using test::ScratchDir;

// Every file under `dir` by its path relative to `dir`, with its bytes; directories as "<dir>".
std::map<std::string, std::string> tree_of(const std::string& dir) {
  std::map<std::string, std::string> tree;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    const std::string relative = fs::relative(entry.path(), dir).string();
    tree[relative] = entry.is_directory() ? "<dir>" : test::read_raw_file(entry.path().string());
  }
  return tree;
}

std::set<std::string> names_in(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.insert(entry.path().filename().string());
  return names;
}

// The id of a process that has exited (and been reaped): what a killed writer leaves in the names
// of its temporaries.
pid_t pid_of_a_dead_process() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  return child;
}

void write_old_contents(const std::string& dir) {
  fs::create_directories(dir + "/sub");
  test::write_raw_file(dir + "/a.bin", "old a");
  test::write_raw_file(dir + "/b.bin", "old b");
  test::write_raw_file(dir + "/sub/c.bin", "old c");
}

void write_new_contents(const std::string& dir) {
  test::write_raw_file(dir + "/b.bin", "new b");
  test::write_raw_file(dir + "/d.bin", "new d");
}

const std::map<std::string, std::string> kNewTree = {{"b.bin", "new b"}, {"d.bin", "new d"}};

TEST(DirectoryReplace, TheNewContentsReplaceTheOldOnesCompletely) {
  ScratchDir scratch;
  const std::string target = scratch.file("model");
  write_old_contents(target);
  replace_directory(target, write_new_contents);
  EXPECT_EQ(tree_of(target), kNewTree);  // a.bin and sub/ are gone with the old directory
  EXPECT_EQ(names_in(scratch.path()), std::set<std::string>{"model"});  // no temporaries left
}

TEST(DirectoryReplace, AMissingTargetIsCreatedWithItsParents) {
  ScratchDir scratch;
  const std::string target = scratch.file("a/b/model/");  // a trailing separator names "model"
  replace_directory(target, write_new_contents);
  EXPECT_EQ(tree_of(scratch.file("a/b/model")), kNewTree);
  EXPECT_EQ(names_in(scratch.file("a/b")), std::set<std::string>{"model"});
}

TEST(DirectoryReplace, AFailureWhileWritingLeavesTheOldDirectoryByteForByte) {
  ScratchDir scratch;
  const std::string target = scratch.file("model");
  write_old_contents(target);
  const auto before = tree_of(target);
  std::string staging_seen;
  EXPECT_THROW(replace_directory(target,
                                 [&](const std::string& staging) {
                                   staging_seen = staging;
                                   write_new_contents(staging);
                                   fail("the disk is full");
                                 }),
               Error);
  EXPECT_EQ(tree_of(target), before);
  EXPECT_EQ(names_in(scratch.path()), std::set<std::string>{"model"});
  // The new contents were written beside the target, under a name that says what it is.
  EXPECT_EQ(fs::path(staging_seen).parent_path(), fs::path(scratch.path()));
  EXPECT_EQ(fs::path(staging_seen).filename().string(), cat(".model.tmp.", ::getpid()));
}

TEST(DirectoryReplace, ASymbolicLinkIsFollowedAndKept) {
  ScratchDir scratch;
  write_old_contents(scratch.file("real"));
  fs::create_directory_symlink(scratch.file("real"), scratch.file("link"));
  replace_directory(scratch.file("link"), write_new_contents);
  EXPECT_TRUE(fs::is_symlink(scratch.file("link")));
  EXPECT_EQ(tree_of(scratch.file("real")), kNewTree);
  EXPECT_EQ(names_in(scratch.path()), (std::set<std::string>{"link", "real"}));
}

TEST(DirectoryReplace, AFileInTheWayIsRefused) {
  ScratchDir scratch;
  test::write_raw_file(scratch.file("model"), "a file");
  test::expect_error([&] { replace_directory(scratch.file("model"), write_new_contents); },
                     {"model", "is not a directory"});
  EXPECT_EQ(test::read_raw_file(scratch.file("model")), "a file");
}

TEST(DirectoryReplace, TemporariesOfDeadProcessesGoAndThoseOfLiveOnesStay) {
  ScratchDir scratch;
  const std::string target = scratch.file("model");
  write_old_contents(target);
  const pid_t dead = pid_of_a_dead_process();
  // A writer killed while writing, one killed while deleting the old contents after the exchange,
  // and a replacement in progress in a live process (pid 1 is always alive).
  write_old_contents(scratch.file(cat(".model.tmp.", dead)));
  write_old_contents(scratch.file(cat(".model.old.", dead)));
  write_old_contents(scratch.file(".model.tmp.1"));
  test::write_raw_file(scratch.file(cat(".other.tmp.", dead)), "another directory's");
  replace_directory(target, write_new_contents);
  EXPECT_EQ(tree_of(target), kNewTree);
  EXPECT_EQ(names_in(scratch.path()), (std::set<std::string>{"model", ".model.tmp.1", cat(".other.tmp.", dead)}));
}

// Where directories cannot be exchanged (NFS), the old one is set aside before the new one is
// renamed in; a kill between the two leaves the path missing. The next replacement puts the old
// directory back before anything else, so even when it fails the old export is there again.
TEST(DirectoryReplace, AnOldDirectorySetAsideByAKilledProcessIsPutBack) {
  ScratchDir scratch;
  const pid_t dead = pid_of_a_dead_process();
  const std::string set_aside = scratch.file(cat(".model.old.", dead));
  write_old_contents(set_aside);
  const auto old_tree = tree_of(set_aside);
  fs::create_directories(scratch.file(cat(".model.tmp.", dead)));
  write_new_contents(scratch.file(cat(".model.tmp.", dead)));  // complete: the kill came after it
  EXPECT_THROW(replace_directory(scratch.file("model"), [](const std::string&) { fail("interrupted"); }), Error);
  EXPECT_EQ(tree_of(scratch.file("model")), old_tree);
  EXPECT_EQ(names_in(scratch.path()), std::set<std::string>{"model"});
}

TEST(DirectoryReplace, TemporaryNamesAreRecognised) {
  EXPECT_TRUE(is_replacement_temporary("model", ".model.tmp.123"));
  EXPECT_TRUE(is_replacement_temporary("model", ".model.old.4"));
  EXPECT_FALSE(is_replacement_temporary("model", ".model.tmp."));
  EXPECT_FALSE(is_replacement_temporary("model", ".model.tmp.12a"));
  EXPECT_FALSE(is_replacement_temporary("model", ".other.tmp.123"));
  EXPECT_FALSE(is_replacement_temporary("model", "model.tmp.123"));
}

}  // namespace
}  // namespace nextn::io
