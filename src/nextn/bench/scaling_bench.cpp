#include "nextn/bench/scaling_bench.h"

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "nextn/bench/median.h"
#include "nextn/config/model_config.h"
#include "nextn/io/atomic_file.h"
#include "nextn/util/error.h"

namespace fs = std::filesystem;

namespace nextn {
namespace {

struct RunFigures {
  double tokens_per_second = 0, comm_share = 0, bytes_per_token = 0;
};

// One `nextn train` run; the medians of its steps after the warm-up.
RunFigures run_training(const ScalingBenchOptions& o, const std::string& config, const std::string& name,
                        const std::string& extra) {
  const std::string run = (fs::path(o.work_dir) / name).string();
  fs::remove_all(run);
  const std::string log = run + ".log";
  const std::string command = o.binary + " train --config " + config + " --data " + o.data + " --run " + run +
                              " --steps " + std::to_string(o.steps) + " --seq-len " + std::to_string(o.seq_len) +
                              " --warmup 2 --eval-every 0 --eval-batches 1 --checkpoint-every 0 --log-every 1 " +
                              extra + " > " + log + " 2>&1";
  const int status = std::system(command.c_str());
  NEXTN_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "bench: `", command, "` failed:\n",
              io::file_exists(log) ? io::read_file(log) : std::string());
  std::vector<double> speed, comm, bytes;
  std::ifstream in(run + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["type"] != "train" || j["step"].get<int64_t>() <= o.warmup) continue;
    speed.push_back(j["tokens_per_second"].get<double>());
    if (j.contains("step_seconds")) {
      comm.push_back(j["comm_seconds"].get<double>() / std::max(j["step_seconds"].get<double>(), 1e-9));
      bytes.push_back(j["all_to_all_bytes_per_token"].get<double>());
    }
  }
  NEXTN_CHECK(!speed.empty(), "bench: run '", run, "' logged no step after the warm-up (--steps > --warmup)");
  fs::remove_all(run);
  fs::remove(log);
  return {median(speed), median(comm), median(bytes)};
}

std::string write_config(const ScalingBenchOptions& o, const ModelConfig& config, const std::string& name) {
  const std::string path = (fs::path(o.work_dir) / (name + ".json")).string();
  save_model_config(config, path);
  return path;
}

}  // namespace

ScalingBenchResult benchmark_scaling(const ScalingBenchOptions& o) {
  NEXTN_CHECK(o.nproc >= 2, "bench train --nproc-per-node must be at least 2, got ", o.nproc);
  NEXTN_CHECK(o.batch_size % o.nproc == 0, "bench train: --batch-size ", o.batch_size, " (the global batch) must ",
              "split evenly over ", o.nproc, " ranks");
  NEXTN_CHECK(o.steps > o.warmup, "bench train: --steps must exceed --warmup");
  NEXTN_CHECK(fs::is_directory(o.data), "bench train: dataset '", o.data, "' does not exist (make it with `nextn data ",
              "prepare`, or pass --data)");
  fs::create_directories(o.work_dir);
  const ModelConfig config = load_model_config(o.config);
  const std::string per_rank = std::to_string(o.batch_size / o.nproc);
  const std::string distributed_flags = "--batch-size " + per_rank + " --nproc-per-node " + std::to_string(o.nproc) +
                                        " --expert-parallel " + std::to_string(o.expert_parallel);
  const std::string single_flags =
      "--batch-size " + std::to_string(o.batch_size) + " --threads " + std::to_string(o.threads);

  std::vector<double> single_speed, dist_speed, dist_comm, dist_bytes, ratios;
  for (int round = 0; round < o.rounds; ++round) {
    RunFigures one = run_training(o, o.config, "one-process", single_flags);
    RunFigures many = run_training(o, o.config, "ranks", distributed_flags);
    single_speed.push_back(one.tokens_per_second);
    dist_speed.push_back(many.tokens_per_second);
    dist_comm.push_back(many.comm_share);
    dist_bytes.push_back(many.bytes_per_token);
    ratios.push_back(many.tokens_per_second / one.tokens_per_second);
  }
  ScalingBenchResult result;
  result.throughput.push_back({o.threads > 0 ? "1 process, " + std::to_string(o.threads) + " threads"
                                             : std::string("1 process, all cores"),
                               median(single_speed), 0, 0});
  result.throughput.push_back({std::to_string(o.nproc) + " ranks (DP " + std::to_string(o.nproc / o.expert_parallel) +
                                   " x EP " + std::to_string(o.expert_parallel) + ")",
                               median(dist_speed), median(dist_comm), median(dist_bytes)});
  result.ratio = median(ratios);

  if (o.expert_parallel > 1) {
    // Bytes per token need few steps: the routing of a fresh model is what is measured.
    ScalingBenchOptions quick = o;
    quick.steps = o.warmup + 2;
    std::vector<std::pair<std::string, ModelConfig>> variants;
    ModelConfig unrestricted = config;
    unrestricted.n_group = 1;
    unrestricted.topk_group = 1;
    variants.push_back({"unrestricted (n_group 1)", unrestricted});
    for (int64_t m = 1; m <= config.n_group; ++m) {
      ModelConfig limited = config;
      limited.topk_group = m;
      // K needs room in M groups, and a group's score sums K / M of its scores (model_config.h).
      if (m * (config.n_routed_experts / config.n_group) < config.num_experts_per_tok) continue;
      if (config.num_experts_per_tok % m != 0) continue;
      variants.push_back({"M = " + std::to_string(m) + " of " + std::to_string(config.n_group) + " groups", limited});
    }
    for (size_t i = 0; i < variants.size(); ++i) {
      const std::string path = write_config(o, variants[i].second, "node-limit-" + std::to_string(i));
      RunFigures f = run_training(quick, path, "node-limit", distributed_flags);
      result.node_limit.push_back({variants[i].first, f.tokens_per_second, f.comm_share, f.bytes_per_token});
      fs::remove(path);
    }
  }
  return result;
}

std::string format_scaling_bench(const ScalingBenchOptions& o, const ScalingBenchResult& r) {
  std::ostringstream out;
  char line[256];
  out << "training throughput, global batch " << o.batch_size << " x " << o.seq_len << ", medians of steps "
      << o.warmup + 1 << ".." << o.steps << " over " << o.rounds << " alternating rounds:\n";
  std::snprintf(line, sizeof line, "%-28s %10s %10s %12s\n", "variant", "tok/s", "comm", "a2a B/token");
  out << line;
  for (const auto& run : r.throughput) {
    std::snprintf(line, sizeof line, "%-28s %10.0f %9.1f%% %12.0f\n", run.variant.c_str(), run.tokens_per_second,
                  100 * run.comm_share, run.all_to_all_bytes_per_token);
    out << line;
  }
  std::snprintf(line, sizeof line, "ranks / one process: %.2fx (median of per-round ratios)\n", r.ratio);
  out << line;
  if (!r.node_limit.empty()) {
    out << "node-limited routing, all-to-all bytes per token (dispatch + combine, to other ranks):\n";
    const double base = r.node_limit.front().all_to_all_bytes_per_token;
    for (const auto& run : r.node_limit) {
      std::snprintf(line, sizeof line, "%-28s %12.0f  (%.2fx of unrestricted)\n", run.variant.c_str(),
                    run.all_to_all_bytes_per_token, base > 0 ? run.all_to_all_bytes_per_token / base : 0.0);
      out << line;
    }
  }
  return out.str();
}

std::string scaling_bench_json(const ScalingBenchResult& r) {
  nlohmann::json j;
  j["ratio"] = r.ratio;
  for (const char* key : {"throughput", "node_limit"}) {
    j[key] = nlohmann::json::array();
    for (const auto& run : std::string(key) == "throughput" ? r.throughput : r.node_limit) {
      j[key].push_back({{"variant", run.variant},
                        {"tokens_per_second", run.tokens_per_second},
                        {"comm_share", run.comm_share},
                        {"all_to_all_bytes_per_token", run.all_to_all_bytes_per_token}});
    }
  }
  return j.dump() + "\n";
}

}  // namespace nextn
