#include <gtest/gtest.h>

#include "nextn/inference/stop_strings.h"

namespace nextn::inference {
namespace {

// Feeds pieces one by one; returns everything shown and whether a stop string matched.
std::pair<std::string, bool> feed(const std::vector<std::string>& stops, const std::vector<std::string>& pieces) {
  StopStringFilter filter(stops);
  std::string shown;
  bool stopped = false;
  for (const auto& piece : pieces) {
    shown += filter.push(piece, stopped);
    if (stopped) return {shown, true};
  }
  return {shown + filter.flush(), false};
}

TEST(StopStrings, StopsBeforeTheMatchEvenAcrossPieces) {
  EXPECT_EQ(feed({"\n\n"}, {"def f():", "\n", "\n", "class"}), std::make_pair(std::string("def f():"), true));
  EXPECT_EQ(feed({"END"}, {"abcE", "N", "Dxyz"}), std::make_pair(std::string("abc"), true));
  EXPECT_EQ(feed({"END", "NDx"}, {"aEN", "Dx"}), std::make_pair(std::string("a"), true));  // earliest match wins
}

TEST(StopStrings, HoldsBackOnlyWhatCouldStillMatch) {
  StopStringFilter filter({"STOP"});
  bool stopped = false;
  EXPECT_EQ(filter.push("abcST", stopped), "abc");
  EXPECT_FALSE(stopped);
  EXPECT_EQ(filter.push("x", stopped), "STx");  // "STx" can no longer become "STOP"
  EXPECT_EQ(filter.push("S", stopped), "");
  EXPECT_EQ(filter.flush(), "S");
}

TEST(StopStrings, NoStopStringsPassEverythingThrough) {
  EXPECT_EQ(feed({}, {"a", "b\n", "c"}), std::make_pair(std::string("ab\nc"), false));
}

}  // namespace
}  // namespace nextn::inference
