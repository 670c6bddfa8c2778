// Everything a training run is configured with. A run writes its options to <run>/run.json; a
// resumed run reads them back, so `nextn train --run DIR --resume` continues with no flags
// repeated and cannot silently change what the run computes.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "nextn/training/adamw.h"
#include "nextn/training/schedules.h"

namespace nextn {

enum class BalanceMode {
  kAuxFree,  // DeepSeek-V3: bias update (gamma) + complementary sequence-wise loss (alpha)
  kAuxLoss,  // baseline: classic batch-level auxiliary loss with coefficient aux_alpha, no bias
  kNone,     // baseline: no balancing at all
};
BalanceMode balance_mode_from_string(const std::string& name);  // "aux-free" | "aux-loss" | "none"
std::string to_string(BalanceMode mode);

struct TrainOptions {
  // Inputs and outputs.
  std::string config_path;  // model config.json (ignored on resume: the checkpoint's is used)
  std::string data_dir;     // a dataset prepared by `nextn data prepare`
  std::string run_dir;
  // Where to train: "cpu" or "cuda[:N]". Not written to run.json: a run may be resumed on another
  // device.
  std::string device = "cpu";
  // Distributed runs: the size of a data-parallel gradient all-reduce bucket, MiB. Not in
  // run.json (it changes no result).
  double bucket_mb = 25;
  // BLAS threads of this process (resolved, never 0 once a run starts). The products' reductions
  // are split by thread count, so a run resumed with other threads leaves bitwise equality with
  // the uninterrupted run: run.json records it, and --resume keeps it unless told otherwise.
  // 0 in runs from before it was recorded.
  int threads = 0;

  // Batches: batch_size windows of seq_len + 1 tokens per micro-batch, grad_accum micro-batches
  // per optimizer step.
  int64_t batch_size = 8;
  int64_t seq_len = 256;
  int64_t grad_accum = 1;
  int64_t steps = 1000;     // optimizer steps (replaced by the time budget's estimate when minutes > 0)
  double minutes = 0.0;     // time budget; 0 = none

  // Optimizer and learning rate.
  double lr = 1e-3;
  double min_lr_ratio = 0.1;
  int64_t warmup_steps = 100;
  LrShape lr_shape = LrShape::kCosine;
  double decay_fraction = 0.2;  // WSD only
  AdamWOptions adamw;
  double clip_grad = 1.0;
  bool decay_embedding = false;

  // Objective.
  bool mtp = true;  // false: next-token-only baseline (--no-mtp)
  // The output head and cross-entropy fused over chunks of tokens (model/fused_head_loss.h): the
  // same loss to rounding without holding [tokens, vocab] logits per depth. false: --unfused-head.
  bool fused_head = true;
  // "fp32" or "bf16" (mixed precision: device/precision.h); "" = the device's default (bf16 on
  // CUDA, fp32 on CPU), which a new run resolves and records: runs from before the choice existed
  // have none in run.json and keep their device's default.
  std::string precision;
  // The library of float32 products on CPU: "onednn" or "blas" (device/cpu_gemm.h); "" = oneDNN
  // where the build has it, which a new run resolves and records: runs from before the choice have
  // none in run.json and resume on BLAS, as they ran (bitwise resume needs the same library).
  std::string fp32_gemm;
  SwitchSchedule mtp_lambda{0.3, 0.1, 10.0 / 14.8};  // V3: 0.3 for the first 10T of 14.8T tokens
  BalanceMode balance = BalanceMode::kAuxFree;
  SwitchSchedule bias_gamma{1e-3, 0.0, 1.0 - 0.5 / 14.8};  // V3: 0 for the last 500B tokens
  bool bias_recenter = false;
  double sequence_alpha = 1e-4;  // V3's complementary sequence-wise loss
  double aux_alpha = 1e-2;       // the aux-loss baseline's coefficient

  // Run control.
  uint64_t seed = 0;
  int64_t log_every = 1;
  // Every this many steps a {"type": "experts"} record in metrics.jsonl: each MoE layer's token
  // counts over the step's global batch and its bias after the step (0: never).
  int64_t log_experts_every = 50;
  int64_t eval_every = 200;    // 0: only at the end
  int64_t eval_batches = 16;
  int64_t checkpoint_every = 200;  // 0: only at the end
  int64_t keep_checkpoints = 2;
  int64_t max_bad_steps = 5;   // consecutive non-finite steps before the run stops
  int64_t inject_nan_step = -1;  // testing: poison this step's loss with NaN
  // testing: rank fault_rank sends itself fault_signal (SIGKILL: a crash; SIGSTOP: a hang) before
  // step fault_step, in the job's first attempt only (not after a torchrun restart). Not in run.json.
  int64_t fault_step = -1;
  int fault_rank = 0;
  int fault_signal = 0;

  // Throws nextn::Error naming the first bad option.
  void validate() const;
};

nlohmann::json train_options_to_json(const TrainOptions& options);
TrainOptions train_options_from_json(const nlohmann::json& json);

}  // namespace nextn
