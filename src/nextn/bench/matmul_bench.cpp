#include "nextn/bench/matmul_bench.h"
#include "nextn/bench/median.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>

#include "nextn/kernels/few_rows_matmul.h"
#include "nextn/util/error.h"

namespace nextn {
namespace {

struct Shape {
  std::string weight;
  int64_t out_features, in_features;
};

// The distinct weight shapes of one decoding step of `config` (MLA projections included).
std::vector<Shape> decoding_shapes(const ModelConfig& c) {
  const int64_t h = c.hidden_size, heads = c.num_attention_heads;
  std::vector<Shape> shapes{{"output head", c.vocab_size, h},
                            {"dense gate/up", c.intermediate_size, h},
                            {"dense down", h, c.intermediate_size},
                            {"expert gate_up", 2 * c.moe_intermediate_size, h},
                            {"expert down", h, c.moe_intermediate_size},
                            {"kv_a_proj", c.kv_lora_rank + c.qk_rope_head_dim, h},
                            {"o_proj", h, heads * c.v_head_dim}};
  if (c.mtp_depth() > 0) shapes.push_back({"mtp eh_proj", h, 2 * h});
  return shapes;
}

template <class F>
double time_call_us(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
}

// Copies of the weight that the calls take in turn. Cold: at least 64 MB of copies, more than a
// CPU's last-level cache, so each call reads its weight from memory as in decoding, where every
// matrix is used once per step. Warm: one copy, cache-resident after the first call when it fits.
std::vector<torch::Tensor> weight_copies(const Shape& shape, bool cold) {
  constexpr int64_t kColdBytes = int64_t{64} << 20;
  const int64_t bytes = shape.out_features * shape.in_features * static_cast<int64_t>(sizeof(float));
  const int64_t count = cold ? std::max<int64_t>(2, (kColdBytes + bytes - 1) / bytes) : 1;
  std::vector<torch::Tensor> copies{torch::randn({shape.out_features, shape.in_features})};
  for (int64_t i = 1; i < count; ++i) copies.push_back(copies.front().clone());
  return copies;
}

MatmulBenchResult measure(const Shape& shape, int64_t rows, int64_t calls, bool cold) {
  torch::NoGradGuard no_grad;
  const std::vector<torch::Tensor> weights = weight_copies(shape, cold);
  size_t next_weight = 0;
  auto take_weight = [&]() -> const torch::Tensor& {
    const torch::Tensor& w = weights[next_weight];
    next_weight = (next_weight + 1) % weights.size();
    return w;
  };
  auto x = torch::randn({rows, shape.in_features});
  auto by_kernel = torch::empty({rows, shape.out_features});
  auto by_sgemv = torch::empty({rows, shape.out_features});
  auto by_sgemm = torch::empty({rows, shape.out_features});
  const kernels::MatrixView xv{x.data_ptr<float>(), rows, shape.in_features, shape.in_features};
  auto kernel = [&] {
    const torch::Tensor& w = take_weight();
    const kernels::MatrixView wv{w.data_ptr<float>(), shape.out_features, shape.in_features, shape.in_features};
    kernels::few_rows_matmul(xv, wv, by_kernel.data_ptr<float>(), shape.out_features);
  };
  auto sgemv = [&] {
    const torch::Tensor& w = take_weight();
    for (int64_t r = 0; r < rows; ++r) {
      auto out_row = by_sgemv.select(0, r);
      torch::mv_out(out_row, w, x.select(0, r));
    }
  };
  auto sgemm = [&] { torch::mm_out(by_sgemm, x, take_weight().t()); };
  // Blocks of kBlock calls per method in turn: interleaved against drifting noise, yet each method
  // mostly runs after itself, as in decoding (BLAS's threads and the kernel's helpers keep
  // polling for a while after their last call, and would steal each other's core at every call).
  constexpr int64_t kBlock = 10;
  std::vector<double> kernel_us, sgemv_us, sgemm_us;
  auto timed_block = [&](auto& method, std::vector<double>& samples) {
    method();  // untimed: wakes this method's threads
    for (int64_t i = 0; i < kBlock; ++i) samples.push_back(time_call_us(method));
  };
  for (int64_t done = 0; done < calls; done += kBlock) {
    timed_block(kernel, kernel_us);
    timed_block(sgemv, sgemv_us);
    timed_block(sgemm, sgemm_us);
  }
  MatmulBenchResult r;
  r.weight = shape.weight;
  r.out_features = shape.out_features;
  r.in_features = shape.in_features;
  r.rows = rows;
  r.kernel_us = median(kernel_us);
  r.sgemv_per_row_us = median(sgemv_us);
  r.sgemm_us = median(sgemm_us);
  r.max_abs_difference = (by_kernel - by_sgemm).abs().max().item<double>();
  return r;
}

}  // namespace

std::vector<MatmulBenchResult> benchmark_matmul(const ModelConfig& config, const MatmulBenchOptions& options) {
  NEXTN_CHECK(options.max_rows >= 1 && options.max_rows <= kernels::kFewRowsMax, "bench matmul: --max-rows must be in [1, ",
              kernels::kFewRowsMax, "], got ", options.max_rows);
  NEXTN_CHECK(options.calls >= 1, "bench matmul: --calls must be >= 1, got ", options.calls);
  torch::manual_seed(0);
  std::vector<MatmulBenchResult> results;
  for (const Shape& shape : decoding_shapes(config)) {
    for (int64_t rows = 1; rows <= options.max_rows; ++rows) {
      results.push_back(measure(shape, rows, options.calls, options.cold_weights));
    }
  }
  return results;
}

std::string format_matmul_bench(const std::vector<MatmulBenchResult>& results) {
  std::ostringstream out;
  char line[256];
  std::snprintf(line, sizeof(line), "%-16s %13s %4s %10s %13s %9s %13s %11s\n", "weight", "shape", "rows",
                "kernel us", "sgemv/row us", "sgemm us", "sgemv/kernel", "sgemm/kernel");
  out << line;
  for (const auto& r : results) {
    const std::string shape = std::to_string(r.out_features) + "x" + std::to_string(r.in_features);
    std::snprintf(line, sizeof(line), "%-16s %13s %4lld %10.1f %13.1f %9.1f %12.2fx %10.2fx\n", r.weight.c_str(),
                  shape.c_str(), static_cast<long long>(r.rows), r.kernel_us, r.sgemv_per_row_us, r.sgemm_us,
                  r.sgemv_per_row_us / r.kernel_us, r.sgemm_us / r.kernel_us);
    out << line;
  }
  double worst = 0;
  for (const auto& r : results) worst = std::max(worst, r.max_abs_difference);
  out << "largest |kernel - sgemm| over every output: " << worst << "\n";
  return out.str();
}

std::string matmul_bench_json(const std::vector<MatmulBenchResult>& results) {
  std::ostringstream out;
  char line[512];
  for (const auto& r : results) {
    std::snprintf(line, sizeof(line),
                  "{\"weight\": \"%s\", \"out_features\": %lld, \"in_features\": %lld, \"rows\": %lld, "
                  "\"kernel_us\": %.3f, \"sgemv_per_row_us\": %.3f, \"sgemm_us\": %.3f, \"max_abs_difference\": %.3g}\n",
                  r.weight.c_str(), static_cast<long long>(r.out_features), static_cast<long long>(r.in_features),
                  static_cast<long long>(r.rows), r.kernel_us, r.sgemv_per_row_us, r.sgemm_us, r.max_abs_difference);
    out << line;
  }
  return out.str();
}

}  // namespace nextn
