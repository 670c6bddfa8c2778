// nextn: train DeepSeek-V3-style MoE language models with multi-token prediction, and run them
// with the MTP modules as speculative drafters.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <thread>

#include "command_registry.h"
#include "nextn/distributed/launch_env.h"
#include "nextn/util/error.h"
#include "nextn/util/runtime_info.h"

namespace nextn::cli {

std::vector<RegisteredCommand>& command_registry() {
  static std::vector<RegisteredCommand> commands;
  return commands;
}

CLI::App& command_group(CLI::App& app, const std::string& name, const std::string& description) {
  std::function<bool(CLI::App*)> named = [&](CLI::App* sub) { return sub->get_name() == name; };
  std::vector<CLI::App*> existing = app.get_subcommands(named);
  if (!existing.empty()) return *existing.front();
  CLI::App* group = app.add_subcommand(name, description);
  group->require_subcommand(1);
  return *group;
}

namespace {

CLI::Validator at_least_zero(bool zero_allowed) {
  return CLI::Validator(
      [zero_allowed](std::string& text) -> std::string {
        double value = 0;
        if (!CLI::detail::lexical_cast(text, value)) return "'" + text + "' is not a number";
        if (!std::isfinite(value)) return "must be a finite number, got " + text;  // inf, 1e400
        if (zero_allowed ? value >= 0 : value > 0) return "";
        return std::string(zero_allowed ? "must be 0 or more" : "must be more than 0") + ", got " + text;
      },
      zero_allowed ? "NONNEGATIVE" : "POSITIVE");
}

}  // namespace

CLI::Validator non_negative() { return at_least_zero(true); }
CLI::Validator positive() { return at_least_zero(false); }

void add_threads_option(CLI::App& command, int& threads) {
  command.add_option("--threads", threads, "CPU threads for matrix products (0 = all cores)")
      ->check(non_negative());
}

void apply_threads(int threads) { set_cpu_threads(threads, 1); }

void add_no_verify_option(CLI::App& command, bool& no_verify) {
  command.add_flag("--no-verify", no_verify,
                   "load the model without checking its files against checksums.json (SHA-256, ~1 s per GB)");
}

}  // namespace nextn::cli

namespace {

// "rank 1: " in a distributed job (each rank prints its own errors), else "".
std::string rank_prefix() {
  try {
    nextn::dist::LaunchEnv env = nextn::dist::detect_launch_env();
    return env.distributed() ? "rank " + std::to_string(env.rank) + ": " : "";
  } catch (const std::exception&) {
    return "";
  }
}

// Seeds are unsigned 64-bit integers, and CLI11 turns "-1" into 2^64 - 1 without a word: a
// user who typed a negative seed meant something else, so every command's --seed refuses it.
void refuse_negative_seeds(CLI::App& command) {
  if (CLI::Option* seed = command.get_option_no_throw("--seed")) {
    seed->check(CLI::Validator(
        [](std::string& text) {
          return text.find('-') != std::string::npos ? "a seed is a non-negative integer, got " + text : std::string();
        },
        "SEED"));
  }
  for (CLI::App* sub : command.get_subcommands([](CLI::App*) { return true; })) refuse_negative_seeds(*sub);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nextn: DeepSeek-V3-style MoE language models with multi-token prediction"};
  app.set_version_flag("--version", std::string("nextn ") + NEXTN_VERSION);
  app.require_subcommand(1);
  auto& commands = nextn::cli::command_registry();
  std::stable_sort(commands.begin(), commands.end(),
                   [](const auto& a, const auto& b) { return a.order < b.order; });
  for (const auto& command : commands) command.setup(app);
  refuse_negative_seeds(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const nextn::Error& e) {
    std::cerr << "nextn: error: " << rank_prefix() << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "nextn: error (libtorch): " << rank_prefix() << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "nextn: error: " << rank_prefix() << e.what() << "\n";
    return 1;
  }
  return 0;
}
