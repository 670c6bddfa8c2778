// The small JSON files of a run and its checkpoints, picked by the first input byte:
// 0 trainer_state.json, 1 run.json (training options), 2 checksums.json (verified against a
// real file beside it).
#include "fuzz_support.h"
#include "nextn/io/file_checksums.h"
#include "nextn/io/json_strict.h"
#include "nextn/training/run_checkpoint.h"
#include "nextn/training/train_options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 3) {
    case 0:
      nextn::fuzz::expect_clean_refusal([&] {
        nextn::trainer_state_from_json(nextn::io::parse_json_rejecting_duplicate_keys(text, "trainer_state.json"));
      });
      break;
    case 1:
      nextn::fuzz::expect_clean_refusal([&] {
        const auto options =
            nextn::train_options_from_json(nextn::io::parse_json_rejecting_duplicate_keys(text, "run.json"));
        nextn::train_options_from_json(nextn::train_options_to_json(options));  // reads back
      });
      break;
    default: {
      const std::string dir = nextn::fuzz::scratch_dir() + "/checkpoint";
      std::filesystem::create_directories(dir);
      nextn::fuzz::write_scratch_file("checkpoint/config.json", reinterpret_cast<const uint8_t*>("{}\n"), 3);
      nextn::fuzz::write_scratch_file("checkpoint/checksums.json", data + 1, size - 1);
      nextn::fuzz::expect_clean_refusal([&] { nextn::io::verify_checksums(dir); });
    }
  }
  return 0;
}
