// Every command-line option that nextn's own text names (error messages that suggest a fix,
// help texts, progress lines) is an option that some nextn command accepts: an error once told
// users to pass `--mtp-reuse-last`, which never existed (it is `--reuse-last-module`).
#include <gtest/gtest.h>

#include <algorithm>

#include <filesystem>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "nextn/io/atomic_file.h"
#include "test_support.h"

namespace nextn {
namespace {

namespace fs = std::filesystem;

// The options listed by `nextn <path> --help`, and those of its subcommands, recursively.
void collect_options(const std::string& path, const std::string& log_dir, std::set<std::string>& options,
                     int depth = 0) {
  std::string help;
  ASSERT_EQ(testing::run_nextn(path + " --help", log_dir, help), 0) << path << ": " << help;
  static const std::regex option(R"((?:^|[\s,])(--[a-z][a-z0-9-]*))");
  for (std::sregex_iterator it(help.begin(), help.end(), option), end; it != end; ++it) options.insert((*it)[1]);
  const size_t section = help.find("\nSubcommands:\n");
  if (section == std::string::npos || depth > 3) return;
  std::istringstream lines(help.substr(section + 14));
  for (std::string line; std::getline(lines, line) && !line.empty();) {
    std::istringstream words(line);
    std::string name;
    if (words >> name) collect_options(path + " " + name, log_dir, options, depth + 1);
  }
}

// "--word" inside the string literals of nextn's sources (comments skipped), with where it is.
std::map<std::string, std::string> options_named_in_sources() {
  std::map<std::string, std::string> named;
  static const std::regex literal(R"("(?:[^"\\\n]|\\.)*")");
  static const std::regex option(R"(--[a-z][a-z0-9_-]*)");
  for (const char* root : {"src", "apps"}) {
    for (const auto& entry : fs::recursive_directory_iterator(testing::source_path(root))) {
      const std::string ext = entry.path().extension().string();
      if (ext != ".cpp" && ext != ".h") continue;
      std::istringstream lines(io::read_file(entry.path().string()));
      int number = 0;
      for (std::string line; std::getline(lines, line);) {
        ++number;
        const size_t code_end = line.find("//");
        const std::string code = line.substr(0, code_end == std::string::npos ? line.size() : code_end);
        for (std::sregex_iterator l(code.begin(), code.end(), literal), end; l != end; ++l) {
          const std::string text = l->str();
          for (std::sregex_iterator o(text.begin(), text.end(), option); o != end; ++o) {
            named.emplace(o->str(), entry.path().filename().string() + ":" + std::to_string(number));
          }
        }
      }
    }
  }
  return named;
}

TEST(CliOptions, EveryOptionTheSourcesNameExists) {
  testing::TempDir dir("cli_options");
  std::set<std::string> accepted;
  collect_options("", dir.path(), accepted);
  ASSERT_GT(accepted.size(), 100u) << "the help texts were not read";
  ASSERT_TRUE(accepted.count("--reuse-last-module"));  // the parser sees subcommands' options

  const auto named = options_named_in_sources();
  ASSERT_GT(named.size(), 100u);
  for (const auto& [option, where] : named) {
    EXPECT_TRUE(accepted.count(option)) << where << " names " << option << ", which no nextn command accepts";
  }
}

}  // namespace
}  // namespace nextn

namespace nextn {
namespace {

// `bench train` without --nproc-per-node times one process (an earlier default of 2 ranks made it
// always run the scaling comparison): each variant once, the unfused head beside the fused one.
TEST(CliOptions, BenchTrainWithoutNprocTimesEveryVariantInOneProcess) {
  testing::TempDir dir("bench_train");
  std::string output;
  const std::string config = std::string(NEXTN_SOURCE_DIR) + "/configs/tiny.json";
  ASSERT_EQ(testing::run_nextn("bench train --config " + config + " --batch-size 2 --seq-len 16 --steps 1 --warmup 0 "
                               "--threads 1 --json", dir.path(), output), 0) << output;
  std::vector<std::string> variants;
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line);
    variants.push_back(j.at("variant").get<std::string>());
    EXPECT_GT(j.at("step_seconds").get<double>(), 0.0) << line;
  }
  EXPECT_EQ(variants, (std::vector<std::string>{"MTP D=2", "MTP D=2 unfused", "no MTP", "MTP D=2 bf16", "no MTP bf16"}))
      << output;
  // --precision picks the variants; a precision it does not know is named.
  ASSERT_EQ(testing::run_nextn("bench train --config " + config + " --batch-size 2 --seq-len 16 --steps 1 --warmup 0 "
                               "--threads 1 --json --precision bf16", dir.path(), output), 0) << output;
  EXPECT_EQ(std::count(output.begin(), output.end(), '\n'), 3) << output;
  EXPECT_NE(output.find("\"MTP D=2 unfused bf16\""), std::string::npos) << output;
  EXPECT_NE(testing::run_nextn("bench train --config " + config + " --precision fp8", dir.path(), output), 0);
  EXPECT_NE(output.find("unknown precision 'fp8'"), std::string::npos) << output;
}

TEST(CliOptions, BenchMoeTimesTheLayerInEitherPrecision) {
  testing::TempDir dir("bench_moe");
  std::string output;
  const std::string config = std::string(NEXTN_SOURCE_DIR) + "/configs/tiny.json";
  for (const char* precision : {"fp32", "bf16"}) {
    ASSERT_EQ(testing::run_nextn("bench moe --config " + config + " --tokens 64 --experts 8 --steps 1 --warmup 0 "
                                 "--threads 1 --json --precision " + std::string(precision), dir.path(), output), 0) << output;
    auto j = nlohmann::json::parse(output.substr(0, output.find('\n')));
    EXPECT_EQ(j.at("experts").get<int64_t>(), 8) << output;
    EXPECT_GT(j.at("fwd_bwd_seconds").get<double>(), 0.0) << output;
  }
  EXPECT_NE(testing::run_nextn("bench moe --config " + config + " --precision half", dir.path(), output), 0);
  EXPECT_NE(output.find("unknown precision 'half'"), std::string::npos) << output;
}

// --repeating: random weights made to repeat, so every draft is accepted; the JSON has auto's choices.
TEST(CliOptions, BenchDecodeRepeatingAcceptsEveryDraft) {
  testing::TempDir dir("bench_decode");
  std::string output;
  const std::string config = std::string(NEXTN_SOURCE_DIR) + "/configs/tiny.json";
  ASSERT_EQ(testing::run_nextn("bench decode --config " + config + " --repeating --max-draft 2 --repeats 1 "
                               "--new-tokens 24 --threads 1 --json", dir.path(), output), 0) << output;
  std::istringstream lines(output);
  int variants = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] != '{') continue;
    auto j = nlohmann::json::parse(line);
    ++variants;
    EXPECT_TRUE(j.at("same_output_as_plain").get<bool>()) << line;
    for (const auto& a : j.at("acceptance_per_depth")) EXPECT_DOUBLE_EQ(a.get<double>(), 1.0) << line;
    if (j.at("variant").get<std::string>().rfind("mtp auto", 0) == 0) {
      const auto steps = j.at("steps_by_draft_count").get<std::vector<int64_t>>();
      ASSERT_EQ(steps.size(), 3u) << line;
      for (int64_t n : steps) EXPECT_GE(n, 2) << line;  // every count is tried (which pays is the machine's)
    }
  }
  EXPECT_EQ(variants, 4) << output;  // plain, N = 1, N = 2, auto
  EXPECT_NE(testing::run_nextn("bench decode --model " + dir.path() + " --repeating", dir.path(), output), 0);
  EXPECT_NE(output.find("--repeating makes random weights repeat"), std::string::npos) << output;
}

}  // namespace
}  // namespace nextn
