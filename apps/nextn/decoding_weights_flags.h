// The options of the commands that decode (generate, inspect, serve, eval --acceptance; bench decode
// takes lists of both and builds one of these per variant) for the weights decoding reads:
// --layout panels|rows and --precision auto|fp32|bf16 (inference/decoding_panels.h).
// generate and serve give the same tokens when they decode with the same two.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "nextn/inference/decoding_panels.h"
#include "nextn/kernels/panel_matmul.h"
#include "nextn/util/error.h"

namespace nextn::cli {

struct DecodingWeightsFlags {
  std::string layout = "panels";
  std::string precision = "auto";

  void add(CLI::App& command) {
    command.add_option("--layout", layout, "the weights decoding reads: 'panels' (packed copies, the default: "
                       "faster, the matrices' memory again) or 'rows' (the model's own)")
        ->check(CLI::IsMember({"panels", "rows"}));
    command.add_option("--precision", precision, "the packed copies: 'auto' (bf16 where the weights are bf16 "
                       "values, e.g. a bf16 checkpoint: the same outputs as fp32, half the bytes; the default), "
                       "'fp32', or 'bf16' (the products in bf16, weights and inputs rounded, sums in fp32; the "
                       "routers' gates as auto: faster, outputs change by the rounding)")
        ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
  }

  // The copies decoding reads, for as long as the result lives; null with --layout rows.
  std::unique_ptr<inference::DecodingPanels> pack(const DeepSeekV3& model) const {
    const inference::DecodingPrecision p = inference::parse_decoding_precision(precision);
    if (layout == "rows") {
      NEXTN_CHECK(p != inference::DecodingPrecision::kBfloat16, "--precision bf16 packs bfloat16 panels; "
                  "--layout rows reads the model's own float32 rows (drop one of the two)");
      return nullptr;
    }
    NEXTN_CHECK(layout == "panels", "--layout '", layout, "': expected panels or rows");
    return std::make_unique<inference::DecodingPanels>(model, p);
  }
};

// "panels (48 MiB, 70 matrices in fp32)" or "the model's rows", for banners.
inline std::string describe_decoding_weights(const inference::DecodingPanels* panels) {
  if (panels != nullptr && panels->matrices() > 0) return "panels (" + panels->describe() + ")";
  return std::string("the model's rows") +
         (panels != nullptr && !kernels::panel_matmul_vectorised() ? " (no vector path for panels on this CPU)" : "");
}

}  // namespace nextn::cli
