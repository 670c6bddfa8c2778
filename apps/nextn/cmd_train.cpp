// `nextn train`.
#include <filesystem>
#include <functional>
#include <iostream>
#include <csignal>
#include <sstream>
#include <thread>

#include "command_registry.h"
#include "nextn/device/device.h"
#include "nextn/checkpoint/hf_checkpoint.h"
#include "nextn/data/token_dataset.h"
#include "nextn/distributed/cluster.h"
#include "nextn/distributed/local_launcher.h"
#include "nextn/io/atomic_file.h"
#include "nextn/io/json_strict.h"
#include "nextn/training/evaluator.h"
#include "nextn/training/model_dataset.h"
#include "nextn/training/run_checkpoint.h"
#include "nextn/training/trainer.h"
#include "nextn/util/error.h"
#include "nextn/util/runtime_info.h"

namespace fs = std::filesystem;

namespace nextn::cli {
namespace {

// The flags of `nextn train`, each bound to an option and to its key in run.json, so that a
// resumed run can check that flags given again agree with the run's.
struct TrainFlags {
  TrainOptions options;
  bool resume = false;
  int threads = 0;
  dist::LocalLaunch launch;
  int expert_parallel = 1;
  double dist_timeout_seconds = 300;
  std::string lr_shape = "cosine", balance = "aux-free";
  bool no_mtp = false;
  bool unfused_head = false;
  std::vector<std::pair<CLI::Option*, std::function<nlohmann::json(const nlohmann::json&)>>> checked;

  template <typename T>
  void add(CLI::App* cmd, const std::string& flag, T& value, const std::string& help,
           std::function<nlohmann::json(const nlohmann::json&)> from_run_json) {
    checked.push_back({cmd->add_option(flag, value, help), std::move(from_run_json)});
  }
};

// This process's command line, for the ranks a launcher starts.
std::vector<std::string> own_command_line() {
  std::istringstream in(io::read_file("/proc/self/cmdline"));
  std::vector<std::string> argv;
  for (std::string arg; std::getline(in, arg, '\0');) argv.push_back(arg);
  return argv;
}

void add_distributed_options(CLI::App* cmd, TrainFlags& f) {
  cmd->add_option("--nproc-per-node", f.launch.nproc_per_node,
                  "start this many ranks on this machine (a launcher like torchrun)")->check(positive());
  cmd->add_option("--nnodes", f.launch.nnodes, "machines in the job (with --nproc-per-node)")
      ->check(positive());
  cmd->add_option("--node-rank", f.launch.node_rank, "this machine's number in the job, from 0")
      ->check(non_negative());
  cmd->add_option("--master-addr", f.launch.master_addr, "address of the machine of rank 0 (with --nnodes > 1)");
  cmd->add_option("--master-port", f.launch.master_port, "rendezvous port (default: a free one, on one machine)")
      ->check(CLI::Range(1, 65535));
  cmd->add_option("--expert-parallel", f.expert_parallel,
                  "ranks that split each MoE layer's routed experts (E divides the world size)")
      ->check(positive());
  cmd->add_option("--dist-timeout", f.dist_timeout_seconds,
                  "seconds a collective or the rendezvous may wait before the run fails")
      ->check(positive());
  cmd->add_option("--bucket-mb", f.options.bucket_mb, "size of a gradient all-reduce bucket, MiB")
      ->check(positive());
  cmd->add_option_function<std::string>(
      "--inject-fault",
      [&f](const std::string& spec) {
        // RANK:STEP:SIGNAL, e.g. 1:7:KILL
        std::istringstream in(spec);
        std::string rank, step, signal;
        NEXTN_CHECK(std::getline(in, rank, ':') && std::getline(in, step, ':') && std::getline(in, signal),
                    "--inject-fault takes RANK:STEP:SIGNAL (e.g. 1:7:KILL), got '", spec, "'");
        if (signal.rfind("SIG", 0) == 0) signal = signal.substr(3);  // SIGKILL as well as KILL
        NEXTN_CHECK(signal == "KILL" || signal == "STOP", "--inject-fault: signal must be KILL or STOP, got '",
                    signal, "'");
        f.options.fault_rank = std::stoi(rank);
        f.options.fault_step = std::stoll(step);
        f.options.fault_signal = signal == "KILL" ? SIGKILL : SIGSTOP;
      },
      "testing: RANK:STEP:SIGNAL, that rank sends itself SIGKILL or SIGSTOP before that step (first attempt only)");
}

std::function<nlohmann::json(const nlohmann::json&)> key(const std::string& k) {
  return [k](const nlohmann::json& j) { return j.at(k); };
}
std::function<nlohmann::json(const nlohmann::json&)> sub(const std::string& k, const std::string& s) {
  return [k, s](const nlohmann::json& j) { return j.at(k).at(s); };
}

// BLAS threads for this process: --threads; else a resumed run's own (its results depend on the
// count); else all cores, shared by the ranks of a machine (torchrun likewise sets
// OMP_NUM_THREADS=1). `recorded` is the run's count from run.json, 0 for a new run.
int choose_threads(const TrainFlags& f, const dist::LaunchEnv& env, int recorded) {
  const int cores = hardware_thread_count();
  int threads = f.threads;
  if (threads == 0 && recorded > 0) threads = recorded;
  if (threads == 0 && env.distributed()) threads = std::max(1, cores / env.local_world_size);
  threads = resolve_thread_count(threads);
  apply_threads(threads);
  if (recorded > 0 && threads != recorded && env.rank == 0) {
    std::cout << "note: the run was trained with " << recorded << " BLAS threads and continues with " << threads
              << ": its results will differ in the last bits from a run that never stopped\n";
  }
  return threads;
}

void setup_train(CLI::App& app) {
  auto f = std::make_shared<TrainFlags>();
  TrainOptions& o = f->options;
  auto* cmd = app.add_subcommand("train", "Train a model with the MTP objective on a prepared dataset");
  cmd->add_option("--config", o.config_path, "model config.json (e.g. configs/small.json)");
  cmd->add_option("--data", o.data_dir, "dataset directory made by `nextn data prepare`");
  cmd->add_option("--run", o.run_dir, "run directory: checkpoints, metrics.jsonl, run.json")->required();
  cmd->add_flag("--resume", f->resume, "continue the run from its newest checkpoint, with its run.json options");
  f->add(cmd, "--batch-size", o.batch_size, "sequences per micro-batch", key("batch_size"));
  f->add(cmd, "--seq-len", o.seq_len, "tokens per sequence (T)", key("seq_len"));
  f->add(cmd, "--grad-accum", o.grad_accum, "micro-batches per optimizer step", key("grad_accum"));
  f->add(cmd, "--steps", o.steps, "optimizer steps", key("steps"));
  f->add(cmd, "--minutes", o.minutes, "time budget: the step count is estimated from the first steps", key("minutes"));
  f->add(cmd, "--lr", o.lr, "peak learning rate", key("lr"));
  f->add(cmd, "--min-lr-ratio", o.min_lr_ratio, "final learning rate as a fraction of the peak", key("min_lr_ratio"));
  f->add(cmd, "--warmup", o.warmup_steps, "linear warmup steps", key("warmup_steps"));
  f->add(cmd, "--lr-schedule", f->lr_shape, "cosine or wsd (warmup-stable-decay)", key("lr_shape"));
  f->add(cmd, "--decay-fraction", o.decay_fraction, "wsd: fraction of steps that decay", key("decay_fraction"));
  f->add(cmd, "--beta1", o.adamw.beta1, "AdamW beta1", key("beta1"));
  f->add(cmd, "--beta2", o.adamw.beta2, "AdamW beta2", key("beta2"));
  f->add(cmd, "--adam-eps", o.adamw.eps, "AdamW epsilon", key("adam_eps"));
  f->add(cmd, "--weight-decay", o.adamw.weight_decay, "AdamW decoupled weight decay", key("weight_decay"));
  f->add(cmd, "--clip-grad", o.clip_grad, "clip the global gradient norm to this (0: off)", key("clip_grad"));
  f->checked.push_back({cmd->add_flag("--decay-embedding", o.decay_embedding, "apply weight decay to the embedding"),
                        key("decay_embedding")});
  f->checked.push_back({cmd->add_flag("--unfused-head", f->unfused_head,
                                      "compute the full logits of each depth, then the cross-entropy (default: the "
                                      "head and the loss fused over chunks of tokens, the same loss without the logits)"),
                        [](const nlohmann::json& j) {
                          return nlohmann::json(!(j.contains("fused_head") && j.at("fused_head").get<bool>()));
                        }});
  f->checked.push_back({cmd->add_option("--precision", o.precision,
                                        "fp32, or bf16: mixed precision, the matrix products in bfloat16 with fp32 "
                                        "weights and optimizer state (default: fp32 on CPU, bf16 on CUDA)"),
                        [](const nlohmann::json& j) {
                          return nlohmann::json(j.contains("precision") ? j.at("precision").get<std::string>() : "");
                        }});
  f->checked.push_back({cmd->add_option("--fp32-gemm", o.fp32_gemm,
                                        "the library of float32 matrix products on CPU: onednn (oneDNN's sgemm) or "
                                        "blas (libtorch's, OpenBLAS) (default: onednn where built)"),
                        [](const nlohmann::json& j) {
                          return nlohmann::json(j.contains("fp32_gemm") ? j.at("fp32_gemm").get<std::string>() : "");
                        }});
  f->checked.push_back({cmd->add_flag("--no-mtp", f->no_mtp, "next-token-only baseline: no MTP modules"),
                        [](const nlohmann::json& j) { return nlohmann::json(!j.at("mtp").get<bool>()); }});
  f->add(cmd, "--mtp-lambda", o.mtp_lambda.value, "MTP loss weight lambda (V3: 0.3)", sub("mtp_lambda", "value"));
  f->add(cmd, "--mtp-lambda-late", o.mtp_lambda.late_value, "lambda after the switch (V3: 0.1)",
         sub("mtp_lambda", "late_value"));
  f->add(cmd, "--mtp-lambda-switch", o.mtp_lambda.switch_fraction, "fraction of steps before lambda switches",
         sub("mtp_lambda", "switch_fraction"));
  f->add(cmd, "--balance", f->balance, "aux-free (bias + sequence loss), aux-loss (classic baseline) or none",
         key("balance"));
  f->add(cmd, "--bias-gamma", o.bias_gamma.value, "expert bias update speed gamma (V3: 0.001)",
         sub("bias_gamma", "value"));
  f->add(cmd, "--bias-gamma-late", o.bias_gamma.late_value, "gamma after the switch (V3: 0)",
         sub("bias_gamma", "late_value"));
  f->add(cmd, "--bias-gamma-switch", o.bias_gamma.switch_fraction, "fraction of steps before gamma switches",
         sub("bias_gamma", "switch_fraction"));
  f->checked.push_back({cmd->add_flag("--bias-recenter", o.bias_recenter, "re-centre each layer's bias to mean 0"),
                        key("bias_recenter")});
  f->add(cmd, "--seq-alpha", o.sequence_alpha, "sequence-wise balance loss alpha (V3: 1e-4)", key("sequence_alpha"));
  f->add(cmd, "--aux-alpha", o.aux_alpha, "aux-loss baseline: batch-level balance loss alpha", key("aux_alpha"));
  f->add(cmd, "--seed", o.seed, "seed of weights and data order", key("seed"));
  f->add(cmd, "--log-every", o.log_every, "steps between console lines", key("log_every"));
  f->add(cmd, "--log-experts-every", o.log_experts_every,
         "steps between records of each MoE layer's expert load and bias in metrics.jsonl (0: never)",
         key("log_experts_every"));
  f->add(cmd, "--eval-every", o.eval_every, "steps between evaluations (0: at the end only)", key("eval_every"));
  f->add(cmd, "--eval-batches", o.eval_batches, "validation batches per evaluation", key("eval_batches"));
  f->add(cmd, "--checkpoint-every", o.checkpoint_every, "steps between checkpoints (0: at the end only)",
         key("checkpoint_every"));
  f->add(cmd, "--keep-checkpoints", o.keep_checkpoints, "checkpoints kept", key("keep_checkpoints"));
  f->add(cmd, "--max-bad-steps", o.max_bad_steps, "consecutive non-finite steps before the run stops",
         key("max_bad_steps"));
  f->add(cmd, "--inject-nan-step", o.inject_nan_step, "testing: make this step's loss NaN", key("inject_nan_step"));
  add_threads_option(*cmd, f->threads);
  cmd->add_option("--device", f->options.device, "cpu or cuda[:N]; a run may resume on another");
  add_distributed_options(cmd, *f);

  cmd->callback([f] {
    const dist::LaunchEnv env = dist::detect_launch_env();
    const bool launcher = (f->launch.nproc_per_node > 1 || f->launch.nnodes > 1) && !env.distributed();
    if (!env.note.empty() && !launcher) std::cerr << "nextn train: " << env.note << "\n";
    if (launcher) {
      const int status = dist::launch_local_ranks(f->launch, own_command_line());
      std::cout.flush();
      std::exit(status);
    }
    if (env.distributed() && f->launch.nproc_per_node > 1) {
      NEXTN_CHECK(env.local_world_size == f->launch.nproc_per_node, "--nproc-per-node ", f->launch.nproc_per_node,
                  " but the launcher (", env.launcher, ") started ", env.local_world_size, " ranks on this machine");
    }
    TrainOptions options = f->options;
    options.lr_shape = lr_shape_from_string(f->lr_shape);
    options.balance = balance_mode_from_string(f->balance);
    options.mtp = !f->no_mtp;
    options.fused_head = !f->unfused_head;
    // torchrun restarts a failed job with the same command line: continue from the newest checkpoint.
    if (env.restart_count > 0 && !f->resume && latest_run_checkpoint(options.run_dir).has_value()) {
      if (env.rank == 0) {
        std::cout << "restart " << env.restart_count << " of the job: resuming " << options.run_dir << "\n";
      }
      f->resume = true;
    }
    if (f->resume) {
      const std::string run_json = (fs::path(options.run_dir) / "run.json").string();
      NEXTN_CHECK(io::file_exists(run_json), "--resume: '", run_json, "' does not exist");
      const nlohmann::json saved = io::parse_json_rejecting_duplicate_keys(io::read_file(run_json), "'" + run_json + "'");
      nlohmann::json given = train_options_to_json(options);
      for (const auto& [option, from_json] : f->checked) {
        if (option->count() == 0) continue;
        NEXTN_CHECK(from_json(given) == from_json(saved), "--resume: ", option->get_name(), " is ",
                    from_json(given).dump(), " but the run was started with ", from_json(saved).dump());
      }
      TrainOptions resumed = train_options_from_json(saved);
      resumed.run_dir = options.run_dir;
      if (!options.data_dir.empty()) resumed.data_dir = options.data_dir;
      if (!options.config_path.empty()) resumed.config_path = options.config_path;
      resumed.device = options.device;
      resumed.bucket_mb = options.bucket_mb;
      resumed.fault_step = options.fault_step;
      resumed.fault_rank = options.fault_rank;
      resumed.fault_signal = options.fault_signal;
      options = resumed;
    }
    options.threads = choose_threads(*f, env, options.threads);
    // Each rank of a machine takes its own GPU.
    if (env.distributed() && options.device == "cuda") options.device = "cuda:" + std::to_string(env.local_rank);
    dist::ClusterOptions cluster_options;
    cluster_options.expert_parallel = f->expert_parallel;
    // (At most a year: a larger finite value would overflow the milliseconds.)
    cluster_options.timeout =
        std::chrono::milliseconds(static_cast<int64_t>(std::min(f->dist_timeout_seconds, 3.2e7) * 1000));
    cluster_options.device = resolve_device(options.device);
    dist::Cluster cluster(env, cluster_options);
    TrainResult result = train(options, f->resume, &cluster);
    if (cluster.is_main()) {
      std::cout << "done: " << result.steps_done << " steps; last checkpoint " << result.last_checkpoint << "\n";
    }
  });
}

NEXTN_REGISTER_COMMAND(40, setup_train);

}  // namespace
}  // namespace nextn::cli
