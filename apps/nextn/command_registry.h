// Each subcommand lives in its own apps/nextn/cmd_*.cpp and registers itself here, so adding a
// command never touches main.cpp.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <vector>

namespace nextn::cli {

using CommandSetup = std::function<void(CLI::App& app)>;

struct RegisteredCommand {
  int order;  // position in `nextn --help`
  CommandSetup setup;
};

std::vector<RegisteredCommand>& command_registry();

struct CommandRegistrar {
  CommandRegistrar(int order, CommandSetup setup) {
    command_registry().push_back({order, std::move(setup)});
  }
};

// A command group that several files extend (e.g. `nextn bench tokenizer` and `nextn bench
// train`): returns the existing subcommand `name` or creates it.
CLI::App& command_group(CLI::App& app, const std::string& name, const std::string& description);

// Validators for numeric options whose message says what is wrong ("--threads: must be 0 or more,
// got -1"): CLI11 2.1's NonNegativeNumber and PositiveNumber are Ranges up to the largest double,
// and their message printed it in full, 309 digits. NaN is refused by both.
CLI::Validator non_negative();  // >= 0
CLI::Validator positive();      // > 0

// Options every command that computes shares.
void add_threads_option(CLI::App& command, int& threads);
void apply_threads(int threads);  // 0 = all cores
// --no-verify: load a model without checking its files against checksums.json.
void add_no_verify_option(CLI::App& command, bool& no_verify);

}  // namespace nextn::cli

#define NEXTN_CONCAT_INNER(a, b) a##b
#define NEXTN_CONCAT(a, b) NEXTN_CONCAT_INNER(a, b)
#define NEXTN_REGISTER_COMMAND(order, setup_fn) \
  static ::nextn::cli::CommandRegistrar NEXTN_CONCAT(nextn_command_, __COUNTER__)(order, setup_fn)
