// config.json: every key of the DeepSeek-V3 layout, validated, and the parameter count of what it
// describes (the sizes nextn checks before it allocates).
#include "fuzz_support.h"
#include "nextn/config/model_config.h"
#include "nextn/io/json_strict.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  nextn::fuzz::expect_clean_refusal([&] {
    const auto json = nextn::io::parse_json_rejecting_duplicate_keys(text, "config.json");
    const nextn::ModelConfig config = nextn::model_config_from_json(json);
    const auto count = nextn::count_parameters(config);
    if (count.total < count.main_model || count.activated > count.main_model) std::abort();
    // What nextn writes, it reads back the same.
    const nextn::ModelConfig again = nextn::model_config_from_json(nextn::model_config_to_json(config));
    if (nextn::model_config_to_json(again).dump() != nextn::model_config_to_json(config).dump()) std::abort();
  });
  return 0;
}
