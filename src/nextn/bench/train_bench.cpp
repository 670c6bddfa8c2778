#include "nextn/bench/train_bench.h"
#include "nextn/bench/median.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <sstream>

#include "nextn/device/cpu_gemm.h"
#include "nextn/device/device.h"
#include "nextn/model/deepseek_v3.h"
#include "nextn/model/model_flops.h"
#include "nextn/model/objective.h"
#include "nextn/model/router.h"
#include "nextn/training/adamw.h"
#include "nextn/training/expert_bias.h"
#include "nextn/util/allocation_peak.h"
#include "nextn/util/op_profiler.h"
#include "nextn/util/phase_timer.h"
#include "nextn/util/runtime_info.h"

namespace nextn {
namespace {

using Clock = std::chrono::steady_clock;

struct Variant {
  std::string name;
  ModelConfig config;
  bool fused_head = true;  // the head and cross-entropy fused over chunks (model/fused_head_loss.h)
  Precision precision = Precision::kFp32;
  CpuFp32Gemm gemm = CpuFp32Gemm::kBlas;
  DeepSeekV3 model{nullptr};
  std::unique_ptr<AdamW> optimizer;
  std::vector<torch::Tensor> params;
  std::vector<Moe> moe_layers;
  std::map<std::string, std::vector<double>> samples;  // phase -> seconds per timed step
  int64_t peak_bytes = -1;
};

void build(Variant& v, uint64_t seed, const torch::Device& device) {
  torch::manual_seed(seed);
  v.model = DeepSeekV3(v.config);
  v.model->to(device);
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (auto& p : v.model->named_parameters()) {
    named.push_back({p.key(), p.value()});
    v.params.push_back(p.value());
  }
  v.optimizer = std::make_unique<AdamW>(named, default_weight_decay(named, false), AdamWOptions{});
  v.moe_layers = v.model->moe_layers();
}

// Reads the clock after the device has finished the work queued so far.
Clock::time_point now(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
  return Clock::now();
}

void step(Variant& v, const torch::Tensor& window, int64_t seq_len, int threads, bool timed) {
  const torch::Device device = window.device();
  auto& phases = PhaseTimes::global();
  phases.reset();
  phases.enable(timed);
  auto inputs = window.narrow(1, 0, seq_len), labels = window.narrow(1, 1, seq_len);
  ObjectiveOptions objective;
  objective.sequence_balance_alpha = 1e-4;

  if (device.is_cpu()) use_cpu_training_threads(v.precision, threads, v.gemm);
  auto t0 = now(device);
  reset_allocation_peak();
  v.optimizer->zero_grad();
  ModelOutput out;
  ObjectiveOutput loss;
  {
    TrainingPrecisionScope precision(device, v.precision);
    out = v.model->forward(inputs, ForwardOptions{v.config.mtp_depth() > 0, true, v.fused_head});
    loss = compute_objective(out, labels, torch::Tensor(), objective);
  }
  auto t1 = now(device);
  phases.enable(false);
  loss.total.backward();
  auto t2 = now(device);
  clip_grad_norm(v.params, 1.0);
  v.optimizer->step(1e-4);
  ExpertLoadAccumulator loads;
  loads.add(out.moe_stats);
  update_expert_bias(v.moe_layers, loads.counts(), 1e-3, false);
  auto t3 = now(device);
  if (!timed) return;
  if (!device.is_cuda()) v.peak_bytes = std::max(v.peak_bytes, read_allocation_peak());
  auto seconds = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
  v.samples["step"].push_back(seconds(t0, t3));
  v.samples["forward"].push_back(seconds(t0, t1));
  v.samples["backward"].push_back(seconds(t1, t2));
  v.samples["optimizer"].push_back(seconds(t2, t3));
  for (const char* phase : {"moe.route", "moe.dispatch", "moe.experts", "moe.combine"}) {
    v.samples[phase].push_back(phases.seconds(phase));
  }
}

// How often the variant's bf16 forward routes a token to another expert than its fp32 forward,
// on the same weights and batch (the router's own product is fp32 in both).
double routing_changed_by_bf16(Variant& v, const torch::Tensor& window, int64_t seq_len) {
  torch::NoGradGuard no_grad;
  auto inputs = window.narrow(1, 0, seq_len);
  auto routing = [&](Precision precision) {
    TrainingPrecisionScope scope(window.device(), precision);
    return v.model->forward(inputs, ForwardOptions{v.config.mtp_depth() > 0, true, true}).moe_stats;
  };
  auto fp32 = routing(Precision::kFp32), bf16 = routing(Precision::kBf16);
  double changed = 0;
  for (size_t layer = 0; layer < fp32.size(); ++layer) {
    changed += changed_expert_choices(bf16[layer].expert_ids.cpu(), fp32[layer].expert_ids.cpu());
  }
  return fp32.empty() ? 0.0 : changed / static_cast<double>(fp32.size());
}

// TFLOP/s of a [2048, 1024] x [1024, 4096] product in `precision` (operands already in its type),
// with the threads and fp32 library a training step in that precision uses.
double product_peak_tflops(Precision precision, CpuFp32Gemm gemm, const torch::Device& device, int threads) {
  if (device.is_cpu()) use_cpu_training_threads(precision, threads, gemm);
  torch::NoGradGuard no_grad;
  const auto dtype = precision == Precision::kBf16 ? torch::kBFloat16 : torch::kFloat;
  auto a = torch::randn({2048, 1024}).to(device, dtype), b = torch::randn({1024, 4096}).to(device, dtype);
  double best = 0;
  for (int i = 0; i < 4; ++i) {
    auto t0 = now(device);
    matmul_2d(a, b);
    const double seconds = std::chrono::duration<double>(now(device) - t0).count();
    if (i > 0) best = std::max(best, 2.0 * 2048 * 1024 * 4096 / seconds / 1e12);  // the first warms up
  }
  return best;
}

}  // namespace

std::vector<TrainBenchResult> benchmark_training(const ModelConfig& config, const TrainBenchOptions& options) {
  const torch::Device device = resolve_device(options.device);
  std::vector<Precision> precisions = options.precisions;
  if (precisions.empty()) precisions.push_back(default_precision(device));
  ModelConfig no_mtp = config;
  no_mtp.num_nextn_predict_layers = 0;
  std::vector<CpuFp32Gemm> gemms = options.fp32_gemms;
  if (gemms.empty()) gemms.push_back(default_training_fp32_gemm());
  std::vector<Variant> variants;
  auto add = [&](const std::string& name, const ModelConfig& c, bool fused_head, Precision precision,
                 CpuFp32Gemm gemm) {
    variants.emplace_back();
    variants.back().name = name + (precision == Precision::kBf16 ? " bf16" : "") +
                           (precision == Precision::kFp32 && gemm != gemms[0] ? " " + to_string(gemm) : "");
    variants.back().config = c;
    variants.back().fused_head = fused_head;
    variants.back().precision = precision;
    variants.back().gemm = gemm;
  };
  const std::string mtp = "MTP D=" + std::to_string(config.mtp_depth());
  for (size_t i = 0; i < precisions.size(); ++i) {
    // fp32 once per gemm (the unfused head with the first only), bf16 once.
    const size_t passes = precisions[i] == Precision::kFp32 ? gemms.size() : 1;
    for (size_t g = 0; g < passes; ++g) {
      if (config.mtp_depth() > 0) {
        add(mtp, config, true, precisions[i], gemms[g]);
        // The same model with the full logits of every depth (--unfused-head), side by side.
        if (i == 0 && g == 0) add(mtp + " unfused", config, false, precisions[i], gemms[g]);
      }
      add("no MTP", no_mtp, true, precisions[i], gemms[g]);
    }
  }
  for (auto& v : variants) build(v, options.seed, device);
  const int threads = std::max(blas_threads(), 1);  // as the command set them (--threads)

  torch::manual_seed(options.seed + 1);
  auto window = torch::randint(config.vocab_size, {options.batch_size, options.seq_len + 1}, torch::kLong).to(device);
  for (int64_t i = 0; i < options.warmup + options.steps; ++i) {
    for (auto& v : variants) step(v, window, options.seq_len, threads, i >= options.warmup);
  }
  PhaseTimes::global().enable(false);
  std::map<std::string, std::string> profiles;
  if (options.profile_top > 0) {
    for (auto& v : variants) {
      OpProfiler profiler;
      step(v, window, options.seq_len, threads, /*timed=*/false);
      profiles[v.name] = profiler.report(options.profile_top, 1.0, "step");
    }
  }

  auto products_of = [](const Variant& v) {
    return v.precision == Precision::kBf16 ? std::string("bf16") : "fp32 " + to_string(v.gemm);
  };
  std::map<std::string, double> peaks;
  for (auto& v : variants) {
    if (!peaks.count(products_of(v))) peaks[products_of(v)] = product_peak_tflops(v.precision, v.gemm, device, threads);
  }

  std::vector<TrainBenchResult> results;
  for (auto& v : variants) {
    TrainBenchResult r;
    r.variant = v.name;
    r.tokens_per_step = options.batch_size * options.seq_len;
    r.step_seconds = median(v.samples["step"]);
    r.forward_seconds = median(v.samples["forward"]);
    r.backward_seconds = median(v.samples["backward"]);
    r.optimizer_seconds = median(v.samples["optimizer"]);
    r.moe_route_seconds = median(v.samples["moe.route"]);
    r.moe_dispatch_seconds = median(v.samples["moe.dispatch"]);
    r.moe_experts_seconds = median(v.samples["moe.experts"]);
    r.moe_combine_seconds = median(v.samples["moe.combine"]);
    r.peak_bytes = v.peak_bytes;
    r.profile = profiles[v.name];
    r.products = products_of(v);
    r.product_peak_tflops = peaks[r.products];
    if (v.precision == Precision::kBf16) r.routing_changed = routing_changed_by_bf16(v, window, options.seq_len);
    r.flops_per_step = training_step_flops(v.config, options.batch_size, options.seq_len, /*with_mtp=*/true);
    results.push_back(r);
  }
  return results;
}

std::string format_train_bench(const std::vector<TrainBenchResult>& results, double peak_tflops) {
  std::ostringstream out;
  char line[256];
  std::snprintf(line, sizeof line, "%-16s %9s %9s %9s | %8s %8s %8s | %8s %8s %8s %8s\n", "variant", "tok/s",
                "step ms", "peak MiB", "fwd ms", "bwd ms", "opt ms", "route", "dispatch", "experts", "combine");
  out << line;
  for (const auto& r : results) {
    const std::string peak = r.peak_bytes < 0 ? "-" : std::to_string((r.peak_bytes + (1 << 19)) >> 20);
    std::snprintf(line, sizeof line, "%-16s %9.0f %9.1f %9s | %8.1f %8.1f %8.1f | %8.1f %8.1f %8.1f %8.1f\n",
                  r.variant.c_str(), r.tokens_per_second(), r.step_seconds * 1e3, peak.c_str(), r.forward_seconds * 1e3,
                  r.backward_seconds * 1e3, r.optimizer_seconds * 1e3, r.moe_route_seconds * 1e3,
                  r.moe_dispatch_seconds * 1e3, r.moe_experts_seconds * 1e3, r.moe_combine_seconds * 1e3);
    out << line;
  }
  auto find = [&](const std::string& name) -> const TrainBenchResult* {
    for (const auto& r : results) {
      if (r.variant == name) return &r;
    }
    return nullptr;
  };
  auto ratio = [&](const std::string& label, const std::string& a, const std::string& b, bool memory) {
    const TrainBenchResult *ra = find(a), *rb = find(b);
    if (ra == nullptr || rb == nullptr) return;
    std::snprintf(line, sizeof line, "%s: step time %.2fx", label.c_str(), ra->step_seconds / rb->step_seconds);
    out << line;
    if (memory && ra->peak_bytes > 0 && rb->peak_bytes > 0) {
      std::snprintf(line, sizeof line, ", peak memory %.2fx",
                    static_cast<double>(ra->peak_bytes) / static_cast<double>(rb->peak_bytes));
      out << line;
    }
    out << "\n";
  };
  std::string mtp;
  for (const auto& r : results) {
    if (mtp.empty() && r.variant.rfind("MTP D=", 0) == 0) mtp = r.variant.substr(0, r.variant.find(' ', 6));
  }
  for (const std::string& suffix : {std::string(), std::string(" bf16")}) {
    if (!mtp.empty()) ratio("MTP / no MTP" + suffix, mtp + suffix, "no MTP" + suffix, false);
  }
  if (!mtp.empty()) ratio("fused head / unfused", mtp, mtp + " unfused", true);
  for (const std::string& name : {mtp, std::string("no MTP")}) {
    if (name.empty()) continue;
    ratio(name + ": bf16 / fp32", name + " bf16", name, true);
    const TrainBenchResult* first = find(name);
    for (const std::string gemm : {"blas", "onednn"}) {  // the first gemm's fp32 over another's
      if (first != nullptr && find(name + " " + gemm) != nullptr) {
        ratio(name + ": " + first->products + " / fp32 " + gemm, name, name + " " + gemm, false);
      }
    }
  }
  for (const auto& r : results) {
    if (r.routing_changed < 0) continue;
    std::snprintf(line, sizeof line, "%s: %.2f%% of expert choices differ from the fp32 forward's (same weights and batch)\n",
                  r.variant.c_str(), 100.0 * r.routing_changed);
    out << line;
  }
  out << "(MoE phases are forward-only parts of fwd; medians of the timed steps)\n";
  for (const auto& r : results) {
    std::snprintf(line, sizeof line, "%-20s model FLOPs %.3g per step, %.3f TFLOP/s (%.0f%% of the measured product peak)",
                  r.variant.c_str(), static_cast<double>(r.flops_per_step), r.achieved_tflops(),
                  100.0 * r.achieved_tflops() / r.product_peak_tflops);
    out << line;
    if (peak_tflops > 0) {
      std::snprintf(line, sizeof line, ", MFU %.1f%% of %.3g TFLOP/s", 100.0 * r.achieved_tflops() / peak_tflops,
                    peak_tflops);
      out << line;
    }
    out << "\n";
  }
  for (const auto& r : results) {
    if (!r.profile.empty()) out << "\noperators of one step, " << r.variant << " (outermost operators; forward, loss, backward and optimizer):\n" << r.profile;
  }
  out << "(model FLOPs: 3x the forward's matrix products, attention over the whole window; see "
         "src/nextn/model/model_flops.h)\n";
  std::map<std::string, double> peaks;
  for (const auto& r : results) peaks[r.products] = r.product_peak_tflops;
  out << "measured product peak here ([2048, 1024] x [1024, 4096], best of 3):";
  for (const auto& [name, tflops] : peaks) {
    std::snprintf(line, sizeof line, " %s %.3f TFLOP/s", name.c_str(), tflops);
    out << line;
  }
  out << "\n";
  return out.str();
}

std::string train_bench_json(const std::vector<TrainBenchResult>& results) {
  std::ostringstream out;
  char line[768];
  for (const auto& r : results) {
    std::snprintf(line, sizeof line,
                  "{\"variant\":\"%s\",\"products\":\"%s\",\"tokens_per_step\":%lld,\"step_seconds\":%.6f,\"forward_seconds\":%.6f,"
                  "\"backward_seconds\":%.6f,\"optimizer_seconds\":%.6f,\"moe_route_seconds\":%.6f,"
                  "\"moe_dispatch_seconds\":%.6f,\"moe_experts_seconds\":%.6f,\"moe_combine_seconds\":%.6f,"
                  "\"flops_per_step\":%lld,\"tflops\":%.6f,\"peak_bytes\":%lld,\"routing_changed\":%.6f,"
                  "\"product_peak_tflops\":%.6f}\n",
                  r.variant.c_str(), r.products.c_str(), static_cast<long long>(r.tokens_per_step), r.step_seconds, r.forward_seconds,
                  r.backward_seconds, r.optimizer_seconds, r.moe_route_seconds, r.moe_dispatch_seconds,
                  r.moe_experts_seconds, r.moe_combine_seconds, static_cast<long long>(r.flops_per_step),
                  r.achieved_tflops(), static_cast<long long>(r.peak_bytes), r.routing_changed,
                  r.product_peak_tflops);
    out << line;
  }
  return out.str();
}

}  // namespace nextn
