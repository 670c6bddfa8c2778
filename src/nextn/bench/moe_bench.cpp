#include "nextn/bench/moe_bench.h"
#include "nextn/bench/median.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <sstream>

#include "nextn/model/moe.h"
#include "nextn/util/error.h"
#include "nextn/util/phase_timer.h"
#include "nextn/util/runtime_info.h"

namespace nextn {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct Size {
  ModelConfig config;
  Moe layer{nullptr};
  std::map<std::string, std::vector<double>> samples;
};

}  // namespace

std::vector<MoeBenchResult> benchmark_moe(const ModelConfig& base, const MoeBenchOptions& options) {
  NEXTN_CHECK(options.tokens >= 1, "bench moe: --tokens must be >= 1, got ", options.tokens);
  NEXTN_CHECK(options.steps >= 1, "bench moe: --steps must be >= 1, got ", options.steps);
  NEXTN_CHECK(!options.experts.empty(), "bench moe: no expert counts given");
  std::vector<Size> sizes;
  for (int64_t e : options.experts) {
    Size s;
    s.config = base;
    s.config.n_routed_experts = e;
    s.config.validate();  // e.g. n_group must divide the expert count
    torch::manual_seed(options.seed);
    s.layer = Moe(s.config);
    torch::NoGradGuard no_grad;
    // The model's initialisation (DeepSeekV3Impl::init_weights): N(0, initializer_range).
    for (auto& p : s.layer->parameters()) {
      if (p.dim() >= 2) p.normal_(0.0, s.config.initializer_range);
    }
    sizes.push_back(std::move(s));
  }
  torch::manual_seed(options.seed + 1);
  auto x = torch::randn({1, options.tokens, base.hidden_size});
  auto grad_out = torch::randn({1, options.tokens, base.hidden_size});

  auto& phases = PhaseTimes::global();
  use_cpu_training_threads(options.precision, std::max(blas_threads(), 1), default_training_fp32_gemm());
  for (int64_t i = 0; i < options.warmup + options.steps; ++i) {
    for (Size& s : sizes) {
      const bool timed = i >= options.warmup;
      s.layer->zero_grad();
      auto input = x.clone().set_requires_grad(true);
      phases.reset();
      phases.enable(timed);
      auto t0 = Clock::now();
      torch::Tensor y;
      {
        TrainingPrecisionScope precision(torch::Device(torch::kCPU), options.precision);
        y = s.layer(input);
      }
      auto t1 = Clock::now();
      y.backward(grad_out);
      auto t2 = Clock::now();
      phases.enable(false);
      if (!timed) continue;
      s.samples["fwd_bwd"].push_back(seconds_between(t0, t2));
      s.samples["fwd"].push_back(seconds_between(t0, t1));
      s.samples["bwd"].push_back(seconds_between(t1, t2));
      for (const char* phase : {"moe.route", "moe.dispatch", "moe.experts", "moe.combine", "moe.experts.backward"}) {
        s.samples[phase].push_back(phases.seconds(phase));
      }
    }
  }

  std::vector<MoeBenchResult> results;
  for (Size& s : sizes) {
    MoeBenchResult r;
    r.experts = s.config.n_routed_experts;
    r.tokens = options.tokens;
    r.top_k = s.config.num_experts_per_tok;
    r.fwd_bwd_seconds = median(s.samples["fwd_bwd"]);
    r.fwd_seconds = median(s.samples["fwd"]);
    r.bwd_seconds = median(s.samples["bwd"]);
    r.route_seconds = median(s.samples["moe.route"]);
    r.dispatch_seconds = median(s.samples["moe.dispatch"]);
    r.experts_seconds = median(s.samples["moe.experts"]);
    r.combine_seconds = median(s.samples["moe.combine"]);
    r.experts_backward_seconds = median(s.samples["moe.experts.backward"]);
    results.push_back(r);
  }
  return results;
}

std::string format_moe_bench(const std::vector<MoeBenchResult>& results) {
  std::ostringstream out;
  char line[256];
  std::snprintf(line, sizeof line, "%8s %11s %8s %8s | %8s %8s %8s %8s | %11s\n", "experts", "fwd+bwd ms", "fwd ms",
                "bwd ms", "route", "dispatch", "experts", "combine", "experts bwd");
  out << line;
  for (const auto& r : results) {
    std::snprintf(line, sizeof line, "%8lld %11.2f %8.2f %8.2f | %8.2f %8.2f %8.2f %8.2f | %11.2f\n",
                  static_cast<long long>(r.experts), r.fwd_bwd_seconds * 1e3, r.fwd_seconds * 1e3,
                  r.bwd_seconds * 1e3, r.route_seconds * 1e3, r.dispatch_seconds * 1e3, r.experts_seconds * 1e3,
                  r.combine_seconds * 1e3, r.experts_backward_seconds * 1e3);
    out << line;
  }
  if (results.size() >= 2) {
    const auto& first = results.front();
    const auto& last = results.back();
    std::snprintf(line, sizeof line, "%lld / %lld experts: fwd+bwd %.2fx, fwd %.2fx (ideal 1.00x: same activated compute)\n",
                  static_cast<long long>(last.experts), static_cast<long long>(first.experts),
                  last.fwd_bwd_seconds / first.fwd_bwd_seconds, last.fwd_seconds / first.fwd_seconds);
    out << line;
  }
  out << "(route/dispatch/experts/combine: forward phases; experts bwd: their backward; medians of the timed steps)\n";
  return out.str();
}

std::string moe_bench_json(const std::vector<MoeBenchResult>& results) {
  std::ostringstream out;
  char line[512];
  for (const auto& r : results) {
    std::snprintf(line, sizeof line,
                  "{\"experts\":%lld,\"tokens\":%lld,\"top_k\":%lld,\"fwd_bwd_seconds\":%.6f,\"fwd_seconds\":%.6f,"
                  "\"bwd_seconds\":%.6f,\"route_seconds\":%.6f,\"dispatch_seconds\":%.6f,\"experts_seconds\":%.6f,"
                  "\"combine_seconds\":%.6f,\"experts_backward_seconds\":%.6f}\n",
                  static_cast<long long>(r.experts), static_cast<long long>(r.tokens), static_cast<long long>(r.top_k),
                  r.fwd_bwd_seconds, r.fwd_seconds, r.bwd_seconds, r.route_seconds, r.dispatch_seconds,
                  r.experts_seconds, r.combine_seconds, r.experts_backward_seconds);
    out << line;
  }
  return out.str();
}

}  // namespace nextn
