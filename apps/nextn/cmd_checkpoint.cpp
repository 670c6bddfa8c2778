// `nextn checkpoint verify DIR`: checks a checkpoint's files (or every checkpoint of a run)
// against the sizes and SHA-256 hashes recorded in its checksums.json when it was saved.
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "command_registry.h"
#include "nextn/io/atomic_file.h"
#include "nextn/io/file_checksums.h"
#include "nextn/training/run_checkpoint.h"
#include "nextn/util/error.h"
#include "nextn/util/memory_info.h"

namespace fs = std::filesystem;

namespace nextn::cli {
namespace {

// The directories to check: DIR itself when it is a model directory, else a run's checkpoints.
std::vector<std::string> directories_to_verify(const std::string& dir) {
  if (io::file_exists((fs::path(dir) / "config.json").string())) return {dir};
  std::vector<std::string> all = run_checkpoints(dir);
  NEXTN_CHECK(!all.empty(), "'", dir, "' is neither a checkpoint (no config.json) nor a run directory with checkpoints");
  return all;
}

// A training checkpoint holds the trainer's state beside the model; a model directory written by
// `nextn export` (or downloaded) holds the model alone.
bool is_training_checkpoint(const std::string& dir) {
  return io::file_exists((fs::path(dir) / "trainer_state.json").string()) ||
         io::file_exists((fs::path(dir) / "optimizer.safetensors").string());
}

void run_verify(const std::string& dir) {
  int corrupt = 0, unverifiable = 0;
  for (const std::string& checkpoint : directories_to_verify(dir)) {
    // A checksums.json that cannot be read is reported as the checkpoint's damage, never skipped.
    const io::ChecksumReport report = io::verify_checksums_reporting(checkpoint);
    if (!report.listed && !is_training_checkpoint(checkpoint)) {
      // Exports carry no checksums by design (docs/RELIABILITY.md): users edit them.
      std::cout << "nothing to verify in " << checkpoint << ": a model directory without " << io::kChecksumsFile
                << " (directories written by `nextn export` carry none; only training checkpoints do)\n";
    } else if (!report.listed) {
      ++unverifiable;
      std::cout << "unverifiable " << checkpoint << ": no " << io::kChecksumsFile << " (saved before nextn wrote one)\n";
    } else if (!report.ok()) {
      ++corrupt;
      std::cout << "CORRUPT " << checkpoint << "\n";
      for (const auto& problem : report.problems) std::cout << "  " << problem << "\n";
    } else {
      std::cout << "ok " << checkpoint << ": " << report.files << " files, " << format_bytes(report.bytes) << " in "
                << std::fixed << std::setprecision(2) << report.seconds << " s\n";
    }
  }
  NEXTN_CHECK(corrupt == 0, corrupt, corrupt == 1 ? " checkpoint is" : " checkpoints are",
              " corrupt: files changed, resized or missing since they were saved (a resumed run sets corrupt "
              "checkpoints aside)");
  NEXTN_CHECK(unverifiable == 0, unverifiable, " checkpoint(s) have no ", io::kChecksumsFile, " to verify against");
}

void setup_checkpoint(CLI::App& app) {
  CLI::App& group = command_group(app, "checkpoint", "Check training checkpoints and model directories");
  auto dir = std::make_shared<std::string>();
  auto* verify = group.add_subcommand(
      "verify", "Check every file of a checkpoint (or of each checkpoint of a run) against its checksums.json");
  verify->add_option("DIR", *dir, "a checkpoint or model directory, or a run directory")->required();
  verify->callback([dir] { run_verify(*dir); });
}

NEXTN_REGISTER_COMMAND(85, setup_checkpoint);

}  // namespace
}  // namespace nextn::cli
