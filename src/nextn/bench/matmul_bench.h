// `nextn bench matmul`: decoding's products y = x W^T for 1-4 rows, at the weight shapes of a
// model config, three ways side by side: the few-rows kernel (kernels/few_rows_matmul.h, what
// nextn uses), one BLAS sgemv per row (what it used before) and one BLAS sgemm (torch::mm). The
// three run interleaved (blocks of calls of each in turn) so that noise on a shared machine hits
// them alike; medians are reported. Cold weights (the default) make each call read its weight from
// memory, as in decoding; warm ones repeat one cache-resident copy.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nextn/config/model_config.h"

namespace nextn {

struct MatmulBenchOptions {
  int64_t max_rows = 4;  // rows 1..max_rows (at most kernels::kFewRowsMax)
  int64_t calls = 200;   // timed calls per shape, row count and method
  bool cold_weights = true;  // each call takes another copy of the weight, >= 64 MB of copies
};

struct MatmulBenchResult {
  std::string weight;  // which weight: "output head", "expert gate_up", ...
  int64_t out_features = 0, in_features = 0, rows = 0;
  double kernel_us = 0, sgemv_per_row_us = 0, sgemm_us = 0;  // medians per call
  double max_abs_difference = 0;                             // kernel against sgemm
};

std::vector<MatmulBenchResult> benchmark_matmul(const ModelConfig& config, const MatmulBenchOptions& options);
std::string format_matmul_bench(const std::vector<MatmulBenchResult>& results);
std::string matmul_bench_json(const std::vector<MatmulBenchResult>& results);

}  // namespace nextn
