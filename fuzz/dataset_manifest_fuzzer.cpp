// A dataset's manifest.json: tokenizer, splits, shards, dtype; read back as written.
#include "fuzz_support.h"
#include "nextn/data/manifest.h"
#include "nextn/io/json_strict.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  nextn::fuzz::expect_clean_refusal([&] {
    const auto json = nextn::io::parse_json_rejecting_duplicate_keys(text, "manifest.json");
    const auto manifest = nextn::data::DatasetManifest::from_json(json, "manifest.json");
    const auto again = nextn::data::DatasetManifest::from_json(manifest.to_json(), "written");
    if (again.to_json().dump() != manifest.to_json().dump()) std::abort();
  });
  return 0;
}
