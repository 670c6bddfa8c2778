// `nextn info`: versions, BLAS and threads of this machine.
#include <iostream>

#include "command_registry.h"
#include "nextn/util/runtime_info.h"

namespace nextn::cli {
namespace {

void setup_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Print versions, BLAS library, threads and devices");
  auto threads = std::make_shared<int>(0);
  add_threads_option(*cmd, *threads);
  cmd->callback([threads] {
    apply_threads(*threads);
    std::cout << describe(runtime_info()) << "\n";
  });
}

NEXTN_REGISTER_COMMAND(100, setup_info);

}  // namespace
}  // namespace nextn::cli
