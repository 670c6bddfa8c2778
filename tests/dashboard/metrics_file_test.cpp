// MetricsFile: the dashboard's incremental reader of metrics.jsonl, against what live and crashed
// runs leave behind (lines appended in pieces, torn lines, rewritten and deleted files).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "nextn/dashboard/metrics_file.h"
#include "nextn/training/metrics_log.h"
#include "test_support.h"

namespace nextn::dashboard {
namespace {

using nextn::testing::TempDir;

std::string train_line(int64_t step, double loss) {
  return nlohmann::json{{"type", "train"}, {"step", step}, {"loss", loss}, {"main_loss", loss - 1},
                        {"mtp_loss", {loss, loss + 0.5}}}.dump();
}

void append(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::app | std::ios::binary);
  out << text;
}

TEST(MetricsFile, ReadsWhatIsAppendedAndHoldsAnIncompleteLastLine) {
  TempDir dir("dash_append");
  const std::string path = dir.file("metrics.jsonl");
  MetricsFile file(path);
  EXPECT_FALSE(file.refresh());
  EXPECT_FALSE(file.exists());

  append(path, train_line(1, 9.0) + "\n" + train_line(2, 8.5) + "\n");
  EXPECT_TRUE(file.refresh());
  ASSERT_EQ(file.records().size(), 2u);
  EXPECT_EQ(file.records()[1], train_line(2, 8.5));
  EXPECT_FALSE(file.refresh());  // nothing new

  // A line written in two pieces: the first piece is held, not parsed, and named in a note.
  const std::string third = train_line(3, 8.0);
  append(path, third.substr(0, 20));
  file.refresh();
  EXPECT_EQ(file.records().size(), 2u);
  EXPECT_EQ(file.incomplete_tail_bytes(), 20);
  ASSERT_EQ(file.notes().size(), 1u);
  EXPECT_NE(file.notes()[0].find("incomplete line (20 bytes)"), std::string::npos) << file.notes()[0];
  append(path, third.substr(20) + "\n");
  file.refresh();
  ASSERT_EQ(file.records().size(), 3u);
  EXPECT_EQ(file.records()[2], third);
  EXPECT_EQ(file.incomplete_tail_bytes(), 0);
  EXPECT_TRUE(file.notes().empty());
  EXPECT_EQ(file.generation(), 0);
  EXPECT_EQ(nlohmann::json::parse(file.records_json(1)).size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(file.records_json(1))[0]["step"], 2);
}

TEST(MetricsFile, SkipsMalformedLinesWithTheirLineNumbers) {
  TempDir dir("dash_malformed");
  const std::string path = dir.file("metrics.jsonl");
  const std::vector<std::pair<std::string, std::string>> lines = {
      {train_line(1, 9.0), ""},
      {R"({"type":"train","step":2,"loss":8.1,"main_lo)", "not valid JSON"},  // torn by a kill, then more lines
      {"[1,2,3]", "not a JSON object"},
      {R"({"step":3,"loss":1})", "no \"type\""},
      {R"({"type":"train","step":-1,"loss":1,"main_loss":1})", "no \"step\""},
      {R"({"type":"train","step":4,"loss":"high","main_loss":1})", "'loss' is not a number"},
      {R"({"type":"train","step":4,"loss":1,"main_loss":1,"mtp_loss":[1,"x"]})", "'mtp_loss' is not an array"},
      {R"({"type":"eval","step":4,"main_accuracy":0.5})", "without 'main_loss'"},
      {R"({"type":"experts","step":4,"load":[[1,2]],"bias":[[0.1]]})", "different sizes"},
      {R"({"type":"experts","step":4,"load":[[1,-2]],"bias":[[0.1,0.2]]})", "token counts"},
      {R"({"type":"experts","step":4,"load":[[1,2]],"bias":[]})", "different numbers of layers"},
      {R"({"type":"train","step":5,"loss":null,"main_loss":null,"skipped":true})", ""},  // a skipped step: NaN
      {R"({"type":"experts","step":5,"load":[[3,1],[0,4]],"bias":[[0.1,-0.1],[0,0]]})", ""},
      {R"({"type":"eval","step":5,"main_loss":2.5,"mtp_loss":[3.0],"max_vio_global":[0.2]})", ""},
      {R"({"type":"a_newer_kind","step":5})", ""},
  };
  std::string text;
  for (const auto& [line, why] : lines) text += line + "\n";
  io::write_file_atomic(path, text + "\n");  // and a blank line, which is not a record
  MetricsFile file(path);
  file.refresh();
  std::vector<std::string> kept;
  std::vector<SkippedLine> expected_skips;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].second.empty()) {
      kept.push_back(lines[i].first);
    } else {
      expected_skips.push_back({static_cast<int64_t>(i + 1), lines[i].second});
    }
  }
  EXPECT_EQ(file.records(), kept);
  ASSERT_EQ(file.skipped().size(), expected_skips.size());
  for (size_t i = 0; i < expected_skips.size(); ++i) {
    EXPECT_EQ(file.skipped()[i].line, expected_skips[i].line);
    EXPECT_NE(file.skipped()[i].reason.find(expected_skips[i].reason), std::string::npos)
        << "line " << expected_skips[i].line << ": " << file.skipped()[i].reason;
  }
  auto notes = file.notes(/*limit=*/3);
  ASSERT_EQ(notes.size(), 4u);
  EXPECT_NE(notes[0].find("line 2 skipped: not valid JSON"), std::string::npos) << notes[0];
  EXPECT_NE(notes[3].find("7 more lines skipped"), std::string::npos) << notes[3];
}

TEST(MetricsFile, StartsOverWhenTheFileIsReplacedShortenedOrDeleted) {
  TempDir dir("dash_replace");
  const std::string path = dir.file("metrics.jsonl");
  io::write_file_atomic(path, train_line(1, 9) + "\n" + train_line(2, 8) + "\n" + train_line(3, 7) + "\n");
  MetricsFile file(path, /*first_generation=*/100);
  file.refresh();
  EXPECT_EQ(file.records().size(), 3u);
  EXPECT_EQ(file.generation(), 100);

  // A resumed run rewrites the file (atomically: a new inode) without the steps it replays.
  io::write_file_atomic(path, train_line(1, 9) + "\n" + train_line(2, 8.25) + "\n");
  EXPECT_TRUE(file.refresh());
  EXPECT_EQ(file.generation(), 101);
  ASSERT_EQ(file.records().size(), 2u);
  EXPECT_EQ(file.records()[1], train_line(2, 8.25));

  // Shortened in place.
  std::filesystem::resize_file(path, train_line(1, 9).size() + 1);
  file.refresh();
  EXPECT_EQ(file.generation(), 102);
  EXPECT_EQ(file.records(), std::vector<std::string>{train_line(1, 9)});

  // Rewritten in place (same inode, as cp onto it does), longer than what was read: what it starts
  // with differs, so it is read from its start again.
  {
    std::ofstream out(path, std::ios::trunc | std::ios::binary);
    out << train_line(1, 5) << "\n" << train_line(2, 4) << "\n" << train_line(3, 3) << "\n";
  }
  EXPECT_TRUE(file.refresh());
  EXPECT_EQ(file.generation(), 103);
  EXPECT_EQ(file.records(), (std::vector<std::string>{train_line(1, 5), train_line(2, 4), train_line(3, 3)}));
  EXPECT_TRUE(file.skipped().empty());

  std::filesystem::remove(path);
  EXPECT_TRUE(file.refresh());
  EXPECT_FALSE(file.exists());
  EXPECT_TRUE(file.records().empty());
  EXPECT_EQ(file.generation(), 104);
  EXPECT_LT(file.seconds_since_modified(), 0);
}

// A byte-order mark is dropped from the record's text: the page parses the records with JSON.parse,
// which rejects one.
TEST(MetricsFile, DropsAByteOrderMark) {
  TempDir dir("dash_bom");
  const std::string path = dir.file("metrics.jsonl");
  io::write_file_atomic(path, "\xEF\xBB\xBF" + train_line(1, 2) + "\n");
  MetricsFile file(path);
  file.refresh();
  EXPECT_EQ(file.records(), std::vector<std::string>{train_line(1, 2)});
  EXPECT_EQ(file.records_json(0), "[" + train_line(1, 2) + "]");
}

// What the trainer writes is what the dashboard draws: its records pass the dashboard's check.
TEST(MetricsFile, TheTrainersRecordsPassTheCheck) {
  StepMetrics step;
  step.step = 7;
  step.loss = 3.5;
  step.main_loss = 3.0;
  step.mtp_loss = {3.2, 3.4};
  step.mtp_accuracy = {0.3, 0.2};
  step.max_vio_layers = {0.5, 0.25};
  EXPECT_EQ(check_metrics_record(to_json(step)), "");
  step.loss = std::nan("");  // a skipped step's loss is written as null
  EXPECT_EQ(check_metrics_record(nlohmann::json::parse(to_json(step).dump())), "");
  EvalMetrics eval;
  eval.step = 7;
  eval.mtp_loss = {3.1};
  eval.mtp_accuracy = {0.4};
  eval.max_vio_global = {0.1, 0.2};
  eval.expert_load = {{0.5, 0.5}, {0.25, 0.75}};
  EXPECT_EQ(check_metrics_record(to_json(eval)), "");
}

}  // namespace
}  // namespace nextn::dashboard
