// Which runs the dashboard finds, what its /api/metrics answers, and the report's embedded data.
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <thread>

#include "nextn/dashboard/dashboard_server.h"
#include "nextn/dashboard/page.h"
#include "nextn/dashboard/report.h"
#include "nextn/dashboard/run_catalog.h"
#include "nextn/util/error.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace nextn::dashboard {
namespace {

using nextn::testing::TempDir;

std::string train_line(int64_t step) {
  return nlohmann::json{{"type", "train"}, {"step", step}, {"loss", 10.0 / step}, {"main_loss", 9.0 / step}}.dump();
}

void make_run(const std::string& dir, int steps) {
  fs::create_directories(dir);
  std::string text;
  for (int s = 1; s <= steps; ++s) text += train_line(s) + "\n";
  io::write_file_atomic(dir + "/metrics.jsonl", text);
  io::write_file_atomic(dir + "/run.json", nlohmann::json{{"balance", "aux-free"}, {"lr", 0.001}}.dump());
}

std::vector<std::string> names(const std::vector<RunLocation>& runs) {
  std::vector<std::string> out;
  for (const auto& r : runs) out.push_back(r.name);
  return out;
}

TEST(RunCatalog, FindsRunsTwoLevelsDownSortedByName) {
  TempDir dir("dash_find");
  make_run(dir.file("runs/b-run"), 1);
  make_run(dir.file("runs/a-run"), 1);
  make_run(dir.file("runs/ablation/aux-loss"), 1);
  make_run(dir.file("runs/ablation/aux-free"), 1);
  fs::create_directories(dir.file("runs/empty/nothing"));
  make_run(dir.file("other/a-run"), 1);
  EXPECT_EQ(names(find_runs({dir.file("runs") + "/"})),
            (std::vector<std::string>{"a-run", "ablation/aux-free", "ablation/aux-loss", "b-run"}));
  EXPECT_EQ(names(find_runs({dir.file("runs/a-run")})), std::vector<std::string>{"a-run"});
  EXPECT_TRUE(find_runs({dir.file("missing")}).empty());
  EXPECT_EQ(names(find_runs({dir.file("runs/a-run") + "/."})), std::vector<std::string>{"a-run"});
  // The same run named twice counts once; two runs of one name: the second by its path.
  auto both = names(find_runs({dir.file("runs/a-run"), dir.file("runs"), dir.file("other")}));
  ASSERT_EQ(both.size(), 5u);
  EXPECT_EQ(std::count(both.begin(), both.end(), "a-run"), 1);
  EXPECT_EQ(std::count(both.begin(), both.end(), dir.file("other/a-run")), 1);
}

TEST(RunCatalog, RecordsSinceAndGenerations) {
  TempDir dir("dash_since");
  make_run(dir.file("runs/r"), 5);
  RunCatalog catalog({dir.file("runs")});
  auto listing = catalog.list();
  ASSERT_EQ(listing.size(), 1u);
  EXPECT_EQ(listing[0]["records"], 5);
  EXPECT_EQ(listing[0]["options"]["balance"], "aux-free");
  const int64_t generation = listing[0]["generation"];

  auto answer = nlohmann::json::parse(*catalog.records_since("r", generation, 3));
  EXPECT_FALSE(answer["reset"].get<bool>());
  ASSERT_EQ(answer["records"].size(), 2u);
  EXPECT_EQ(answer["records"][0], nlohmann::json::parse(train_line(4)));
  EXPECT_EQ(answer["total"], 5);
  // Another generation, or more records than there are: everything, flagged as a reset.
  answer = nlohmann::json::parse(*catalog.records_since("r", generation + 1, 3));
  EXPECT_TRUE(answer["reset"].get<bool>());
  EXPECT_EQ(answer["records"].size(), 5u);
  answer = nlohmann::json::parse(*catalog.records_since("r", generation, 9));
  EXPECT_TRUE(answer["reset"].get<bool>());
  EXPECT_FALSE(catalog.records_since("nope", 0, 0).has_value());

  // Deleted and started again under the same name: a generation the old one never had.
  fs::remove_all(dir.file("runs/r"));
  EXPECT_TRUE(catalog.list().empty());
  make_run(dir.file("runs/r"), 7);
  listing = catalog.list();
  ASSERT_EQ(listing.size(), 1u);
  EXPECT_NE(listing[0]["generation"].get<int64_t>(), generation);
  answer = nlohmann::json::parse(*catalog.records_since("r", generation, 5));
  EXPECT_TRUE(answer["reset"].get<bool>());
  EXPECT_EQ(answer["records"].size(), 7u);

  // A run.json that is not JSON: the run stays, with a note.
  io::write_file_atomic(dir.file("runs/r/run.json"), "{oops");
  listing = catalog.list();
  ASSERT_EQ(listing[0]["notes"].size(), 1u);
  EXPECT_NE(listing[0]["notes"][0].get<std::string>().find("run.json could not be read"), std::string::npos);
}

// The JSON between <script id="nextn-data" ...> and its </script>.
nlohmann::json embedded_data(const std::string& page) {
  const std::string open = "<script id=\"nextn-data\" type=\"application/json\" data-mode=\"report\">";
  const size_t start = page.find(open);
  EXPECT_NE(start, std::string::npos);
  const size_t end = page.find("</script>", start);
  return nlohmann::json::parse(page.substr(start + open.size(), end - start - open.size()));
}

TEST(Report, EmbedsTheRunsSoThatNoNameCanEndTheScriptElement) {
  nlohmann::json data = {{"runs", {{{"name", "</script><script>alert(1)</script>"}, {"records", {1, 2}}}}}};
  const std::string escaped = json_for_script_element(data);
  EXPECT_EQ(escaped.find('<'), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(escaped), data);
  const std::string page = render_report_page(data);
  EXPECT_EQ(embedded_data(page), data);
  EXPECT_EQ(page.find("/*NEXTN_"), std::string::npos) << "a template marker left unfilled";
  EXPECT_NE(page.find("Apache ECharts"), std::string::npos) << "ECharts is not inlined";
  EXPECT_NE(render_live_page().find("data-mode=\"live\">null</script>"), std::string::npos);
}

TEST(Report, WritesEveryRecordOfEveryRunAndRefusesWhatItCannotDo) {
  TempDir dir("dash_report");
  make_run(dir.file("runs/a"), 4);
  make_run(dir.file("runs/b"), 2);
  io::write_file_atomic(dir.file("runs/b/metrics.jsonl"), train_line(1) + "\nnot json\n" + train_line(2) + "\n");
  auto summary = write_report({dir.file("runs")}, dir.file("report.html"));
  EXPECT_EQ(summary.runs, 2);
  EXPECT_EQ(summary.records, 6);
  auto data = embedded_data(io::read_file(dir.file("report.html")));
  ASSERT_EQ(data["runs"].size(), 2u);
  EXPECT_EQ(data["runs"][0]["name"], "a");
  EXPECT_EQ(data["runs"][0]["records"].size(), 4u);
  EXPECT_EQ(data["runs"][0]["records"][3], nlohmann::json::parse(train_line(4)));
  ASSERT_EQ(data["runs"][1]["notes"].size(), 1u);
  EXPECT_NE(data["runs"][1]["notes"][0].get<std::string>().find("line 2 skipped"), std::string::npos);

  fs::create_directories(dir.file("empty"));
  try {
    write_report({dir.file("empty")}, dir.file("r2.html"));
    ADD_FAILURE() << "a report of no runs";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no runs"), std::string::npos) << e.what();
  }
  EXPECT_THROW(write_report({dir.file("missing")}, dir.file("r2.html")), Error);
  EXPECT_THROW(write_report({dir.file("runs")}, dir.file("no/such/dir/r.html")), Error);
  EXPECT_FALSE(fs::exists(dir.file("r2.html")));
}

TEST(DashboardServer, AnswersItsRoutesAndRefusesBadQueries) {
  TempDir dir("dash_server");
  make_run(dir.file("runs/r"), 3);
  DashboardOptions options;
  options.roots = {dir.file("runs")};
  options.port = 0;
  DashboardServer server(options);
  server.bind();
  std::thread listener([&] { server.listen(); });
  httplib::Client client("127.0.0.1", server.port());
  auto page = client.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("data-mode=\"live\""), std::string::npos);
  auto runs = client.Get("/api/runs");
  ASSERT_TRUE(runs);
  EXPECT_EQ(nlohmann::json::parse(runs->body)["runs"][0]["records"], 3);
  auto metrics = client.Get("/api/metrics?run=r&generation=0&from=1");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(nlohmann::json::parse(metrics->body)["records"].size(), 2u);
  auto status = [&](const char* path) {
    auto result = client.Get(path);
    return result ? result->status : -1;  // -1: no answer
  };
  EXPECT_EQ(status("/api/metrics?run=r&generation=x&from=1"), 400);
  EXPECT_EQ(status("/api/metrics?generation=0&from=1"), 400);
  EXPECT_EQ(status("/api/metrics?run=zz&generation=0&from=0"), 404);
  EXPECT_EQ(status("/api/server"), 404);  // no --server
  server.stop();
  listener.join();
}

}  // namespace
}  // namespace nextn::dashboard
