// The trainer's console line and its metrics.jsonl writer.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "nextn/training/metrics_log.h"
#include "test_support.h"

namespace nextn {
namespace {

TEST(MetricsLog, StepLineShowsProgressOrThatStepsAreBeingTimed) {
  StepMetrics m;
  m.step = 5;
  m.total_steps = 10;
  m.loss = 2.5;
  m.main_loss = 2.0;
  m.mtp_loss = {2.25};
  m.eta_seconds = 65;
  const std::string line = format_step_line(m);
  EXPECT_NE(line.find("step 5/10 [##########..........]  50% | loss 2.5000 main 2.0000 mtp1 2.2500"), std::string::npos)
      << line;
  EXPECT_NE(line.find("ETA 1m05s"), std::string::npos) << line;
  m.total_steps = kCalibratingSteps;  // a --minutes run before its steps are timed
  const std::string calibrating = format_step_line(m);
  EXPECT_NE(calibrating.find("step 5 (timing steps for --minutes) | loss 2.5000"), std::string::npos) << calibrating;
  EXPECT_NE(calibrating.find("ETA ?"), std::string::npos) << calibrating;
  EXPECT_EQ(calibrating.find("2147483647"), std::string::npos) << calibrating;
}

TEST(MetricsLog, RecordsRoundFloatsToSevenDigitsAndResumeDropsReplayedSteps) {
  testing::TempDir dir("metrics_log");
  const std::string path = dir.file("metrics.jsonl");
  {
    JsonLinesLog log;
    log.open(path, -1);
    for (int64_t step = 1; step <= 4; ++step) {
      log.write({{"type", "train"}, {"step", step}, {"loss", 1.0 / 3.0 + static_cast<double>(step)},
                 {"tokens_seen", int64_t{123456789012}}, {"lr", 2.9999999e-4}, {"nan", std::nan("")},
                 {"nested", {{"seconds", {0.123456789, 1e-12}}}}});
    }
  }
  io::write_file_atomic(path, io::read_file(path) + "{\"type\":\"train\",\"st");  // torn by a kill
  std::istringstream lines(io::read_file(path));
  std::string first;
  std::getline(lines, first);
  auto r = nlohmann::json::parse(first);
  EXPECT_EQ(r["loss"].get<double>(), 1.333333);
  EXPECT_EQ(r["tokens_seen"].get<int64_t>(), 123456789012);  // integers are not rounded
  EXPECT_EQ(r["lr"].get<double>(), 3e-4);  // 2.9999999e-4 to 7 digits
  EXPECT_TRUE(r["nan"].is_null());
  EXPECT_EQ(r["nested"]["seconds"][0].get<double>(), 0.1234568);
  EXPECT_EQ(r["nested"]["seconds"][1].get<double>(), 1e-12);

  JsonLinesLog resumed;
  resumed.open(path, /*keep_through_step=*/2);
  resumed.write({{"type", "train"}, {"step", 3}});
  std::istringstream kept(io::read_file(path));
  std::vector<int64_t> steps;
  for (std::string line; std::getline(kept, line);) steps.push_back(nlohmann::json::parse(line)["step"]);
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3}));
}

}  // namespace
}  // namespace nextn
