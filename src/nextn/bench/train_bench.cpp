#include "nextn/bench/train_bench.h"
#include "nextn/bench/median.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <sstream>

#include "nextn/device/device.h"
#include "nextn/model/deepseek_v3.h"
#include "nextn/model/model_flops.h"
#include "nextn/model/objective.h"
#include "nextn/training/adamw.h"
#include "nextn/training/expert_bias.h"
#include "nextn/util/allocation_peak.h"
#include "nextn/util/phase_timer.h"

namespace nextn {
namespace {

using Clock = std::chrono::steady_clock;

struct Variant {
  std::string name;
  ModelConfig config;
  bool fused_head = true;  // the head and cross-entropy fused over chunks (model/fused_head_loss.h)
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

void step(Variant& v, const torch::Tensor& window, int64_t seq_len, bool timed) {
  const torch::Device device = window.device();
  auto& phases = PhaseTimes::global();
  phases.reset();
  phases.enable(timed);
  auto inputs = window.narrow(1, 0, seq_len), labels = window.narrow(1, 1, seq_len);
  ObjectiveOptions objective;
  objective.sequence_balance_alpha = 1e-4;

  auto t0 = now(device);
  reset_allocation_peak();
  v.optimizer->zero_grad();
  ModelOutput out;
  ObjectiveOutput loss;
  {
    TrainingPrecisionScope precision(device);
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

}  // namespace

std::vector<TrainBenchResult> benchmark_training(const ModelConfig& config, const TrainBenchOptions& options) {
  std::vector<Variant> variants;
  if (config.mtp_depth() > 0) {
    variants.emplace_back();
    variants.back().name = "MTP D=" + std::to_string(config.mtp_depth());
    variants.back().config = config;
    // The same model with the full logits of every depth (--unfused-head), side by side.
    variants.emplace_back();
    variants.back().name = "MTP D=" + std::to_string(config.mtp_depth()) + " unfused";
    variants.back().config = config;
    variants.back().fused_head = false;
  }
  ModelConfig no_mtp = config;
  no_mtp.num_nextn_predict_layers = 0;
  variants.emplace_back();
  variants.back().name = "no MTP";
  variants.back().config = no_mtp;
  const torch::Device device = resolve_device(options.device);
  for (auto& v : variants) build(v, options.seed, device);

  torch::manual_seed(options.seed + 1);
  auto window = torch::randint(config.vocab_size, {options.batch_size, options.seq_len + 1}, torch::kLong).to(device);
  for (int64_t i = 0; i < options.warmup + options.steps; ++i) {
    for (auto& v : variants) step(v, window, options.seq_len, i >= options.warmup);
  }
  PhaseTimes::global().enable(false);

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
  if (results.size() >= 2) {
    std::snprintf(line, sizeof line, "MTP step time / no-MTP step time: %.2fx\n",
                  results[0].step_seconds / results.back().step_seconds);
    out << line;
  }
  if (results.size() == 3) {
    std::snprintf(line, sizeof line, "fused head / unfused: step time %.2fx", results[0].step_seconds / results[1].step_seconds);
    out << line;
    if (results[0].peak_bytes > 0 && results[1].peak_bytes > 0) {
      std::snprintf(line, sizeof line, ", peak memory %.2fx",
                    static_cast<double>(results[0].peak_bytes) / static_cast<double>(results[1].peak_bytes));
      out << line;
    }
    out << "\n";
  }
  out << "(MoE phases are forward-only parts of fwd; medians of the timed steps)\n";
  for (const auto& r : results) {
    std::snprintf(line, sizeof line, "%-16s model FLOPs %.3g per step, %.3f TFLOP/s", r.variant.c_str(),
                  static_cast<double>(r.flops_per_step), r.achieved_tflops());
    out << line;
    if (peak_tflops > 0) {
      std::snprintf(line, sizeof line, ", MFU %.1f%% of %.3g TFLOP/s", 100.0 * r.achieved_tflops() / peak_tflops,
                    peak_tflops);
      out << line;
    }
    out << "\n";
  }
  out << "(model FLOPs: 3x the forward's matrix products, attention over the whole window; see "
         "src/nextn/model/model_flops.h)\n";
  return out.str();
}

std::string train_bench_json(const std::vector<TrainBenchResult>& results) {
  std::ostringstream out;
  char line[768];
  for (const auto& r : results) {
    std::snprintf(line, sizeof line,
                  "{\"variant\":\"%s\",\"tokens_per_step\":%lld,\"step_seconds\":%.6f,\"forward_seconds\":%.6f,"
                  "\"backward_seconds\":%.6f,\"optimizer_seconds\":%.6f,\"moe_route_seconds\":%.6f,"
                  "\"moe_dispatch_seconds\":%.6f,\"moe_experts_seconds\":%.6f,\"moe_combine_seconds\":%.6f,"
                  "\"flops_per_step\":%lld,\"tflops\":%.6f,\"peak_bytes\":%lld}\n",
                  r.variant.c_str(), static_cast<long long>(r.tokens_per_step), r.step_seconds, r.forward_seconds,
                  r.backward_seconds, r.optimizer_seconds, r.moe_route_seconds, r.moe_dispatch_seconds,
                  r.moe_experts_seconds, r.moe_combine_seconds, static_cast<long long>(r.flops_per_step),
                  r.achieved_tflops(), static_cast<long long>(r.peak_bytes));
    out << line;
  }
  return out.str();
}

}  // namespace nextn
