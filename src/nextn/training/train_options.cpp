#include "nextn/training/train_options.h"

#include "nextn/device/cpu_gemm.h"
#include "nextn/device/precision.h"
#include "nextn/io/json_strict.h"
#include "nextn/util/error.h"

namespace nextn {

BalanceMode balance_mode_from_string(const std::string& name) {
  if (name == "aux-free") return BalanceMode::kAuxFree;
  if (name == "aux-loss") return BalanceMode::kAuxLoss;
  if (name == "none") return BalanceMode::kNone;
  fail("unknown balance mode '", name, "' (expected aux-free, aux-loss or none)");
}

std::string to_string(BalanceMode mode) {
  switch (mode) {
    case BalanceMode::kAuxFree: return "aux-free";
    case BalanceMode::kAuxLoss: return "aux-loss";
    case BalanceMode::kNone: return "none";
  }
  return "?";
}

void TrainOptions::validate() const {
  NEXTN_CHECK(!data_dir.empty(), "no dataset given (--data)");
  NEXTN_CHECK(!run_dir.empty(), "no run directory given (--run)");
  NEXTN_CHECK(batch_size > 0, "--batch-size must be positive, got ", batch_size);
  NEXTN_CHECK(seq_len >= 2, "--seq-len must be at least 2, got ", seq_len);
  NEXTN_CHECK(grad_accum > 0, "--grad-accum must be positive, got ", grad_accum);
  NEXTN_CHECK(steps > 0 || minutes > 0, "--steps must be positive, got ", steps);
  NEXTN_CHECK(minutes >= 0, "--minutes must be >= 0, got ", minutes);
  NEXTN_CHECK(lr > 0, "--lr must be positive, got ", lr);
  NEXTN_CHECK(min_lr_ratio >= 0 && min_lr_ratio <= 1, "--min-lr-ratio must be in [0, 1], got ", min_lr_ratio);
  NEXTN_CHECK(warmup_steps >= 0, "--warmup must be >= 0, got ", warmup_steps);
  NEXTN_CHECK(decay_fraction >= 0 && decay_fraction <= 1, "--decay-fraction must be in [0, 1], got ", decay_fraction);
  NEXTN_CHECK(adamw.beta1 >= 0 && adamw.beta1 < 1 && adamw.beta2 >= 0 && adamw.beta2 < 1,
              "AdamW betas must be in [0, 1)");
  NEXTN_CHECK(adamw.eps > 0, "--adam-eps must be positive");
  NEXTN_CHECK(adamw.weight_decay >= 0, "--weight-decay must be >= 0");
  NEXTN_CHECK(mtp_lambda.value >= 0 && mtp_lambda.late_value >= 0, "--mtp-lambda must be >= 0");
  NEXTN_CHECK(bias_gamma.value >= 0 && bias_gamma.late_value >= 0, "--bias-gamma must be >= 0");
  NEXTN_CHECK(sequence_alpha >= 0 && aux_alpha >= 0, "balance loss coefficients must be >= 0");
  NEXTN_CHECK(log_every > 0, "--log-every must be positive");
  NEXTN_CHECK(log_experts_every >= 0, "--log-experts-every must be >= 0");
  NEXTN_CHECK(eval_every >= 0 && checkpoint_every >= 0, "--eval-every and --checkpoint-every must be >= 0");
  NEXTN_CHECK(eval_batches > 0, "--eval-batches must be positive");
  NEXTN_CHECK(keep_checkpoints > 0, "--keep-checkpoints must be positive");
  NEXTN_CHECK(max_bad_steps > 0, "--max-bad-steps must be positive");
  NEXTN_CHECK(bucket_mb > 0, "--bucket-mb must be positive, got ", bucket_mb);
  if (!precision.empty()) precision_from_string(precision);  // names a bad one
  if (!fp32_gemm.empty()) cpu_fp32_gemm_from_string(fp32_gemm);
}

nlohmann::json train_options_to_json(const TrainOptions& o) {
  auto schedule = [](const SwitchSchedule& s) {
    return nlohmann::json{{"value", s.value}, {"late_value", s.late_value}, {"switch_fraction", s.switch_fraction}};
  };
  return {{"config_path", o.config_path},
          {"data_dir", o.data_dir},
          {"run_dir", o.run_dir},
          {"batch_size", o.batch_size},
          {"seq_len", o.seq_len},
          {"grad_accum", o.grad_accum},
          {"steps", o.steps},
          {"minutes", o.minutes},
          {"lr", o.lr},
          {"min_lr_ratio", o.min_lr_ratio},
          {"warmup_steps", o.warmup_steps},
          {"lr_shape", to_string(o.lr_shape)},
          {"decay_fraction", o.decay_fraction},
          {"beta1", o.adamw.beta1},
          {"beta2", o.adamw.beta2},
          {"adam_eps", o.adamw.eps},
          {"weight_decay", o.adamw.weight_decay},
          {"clip_grad", o.clip_grad},
          {"decay_embedding", o.decay_embedding},
          {"mtp", o.mtp},
          {"fused_head", o.fused_head},
          {"precision", o.precision},
          {"fp32_gemm", o.fp32_gemm},
          {"mtp_lambda", schedule(o.mtp_lambda)},
          {"balance", to_string(o.balance)},
          {"bias_gamma", schedule(o.bias_gamma)},
          {"bias_recenter", o.bias_recenter},
          {"sequence_alpha", o.sequence_alpha},
          {"aux_alpha", o.aux_alpha},
          {"seed", o.seed},
          {"threads", o.threads},
          {"log_every", o.log_every},
          {"log_experts_every", o.log_experts_every},
          {"eval_every", o.eval_every},
          {"eval_batches", o.eval_batches},
          {"checkpoint_every", o.checkpoint_every},
          {"keep_checkpoints", o.keep_checkpoints},
          {"max_bad_steps", o.max_bad_steps},
          {"inject_nan_step", o.inject_nan_step}};
}

TrainOptions train_options_from_json(const nlohmann::json& j) {
  static const std::string kRun = "run options (run.json)";
  TrainOptions o;
  try {
    auto schedule = [](const nlohmann::json& s) {
      return SwitchSchedule{s.at("value").get<double>(), s.at("late_value").get<double>(),
                            s.at("switch_fraction").get<double>()};
    };
    o.config_path = j.at("config_path").get<std::string>();
    o.data_dir = j.at("data_dir").get<std::string>();
    o.run_dir = j.at("run_dir").get<std::string>();
    o.batch_size = io::json_integer(j, "batch_size", kRun);
    o.seq_len = io::json_integer(j, "seq_len", kRun);
    o.grad_accum = io::json_integer(j, "grad_accum", kRun);
    o.steps = io::json_integer(j, "steps", kRun);
    o.minutes = j.at("minutes").get<double>();
    o.lr = j.at("lr").get<double>();
    o.min_lr_ratio = j.at("min_lr_ratio").get<double>();
    o.warmup_steps = io::json_integer(j, "warmup_steps", kRun);
    o.lr_shape = lr_shape_from_string(j.at("lr_shape").get<std::string>());
    o.decay_fraction = j.at("decay_fraction").get<double>();
    o.adamw.beta1 = j.at("beta1").get<double>();
    o.adamw.beta2 = j.at("beta2").get<double>();
    o.adamw.eps = j.at("adam_eps").get<double>();
    o.adamw.weight_decay = j.at("weight_decay").get<double>();
    o.clip_grad = j.at("clip_grad").get<double>();
    o.decay_embedding = j.at("decay_embedding").get<bool>();
    o.mtp = j.at("mtp").get<bool>();
    // Absent in runs from before the fused head: those computed the logits (resumed the same way).
    o.fused_head = j.contains("fused_head") ? j.at("fused_head").get<bool>() : false;
    // Absent in runs from before the choice: their device's default, as they ran.
    o.precision = j.contains("precision") ? j.at("precision").get<std::string>() : "";
    o.fp32_gemm = j.contains("fp32_gemm") ? j.at("fp32_gemm").get<std::string>() : "";
    o.mtp_lambda = schedule(j.at("mtp_lambda"));
    o.balance = balance_mode_from_string(j.at("balance").get<std::string>());
    o.bias_gamma = schedule(j.at("bias_gamma"));
    o.bias_recenter = j.at("bias_recenter").get<bool>();
    o.sequence_alpha = j.at("sequence_alpha").get<double>();
    o.aux_alpha = j.at("aux_alpha").get<double>();
    o.seed = io::json_unsigned(j, "seed", kRun);
    const int64_t threads = io::json_integer(j, "threads", kRun, 0);  // absent in runs from before
    NEXTN_CHECK(threads >= 0 && threads <= (1 << 16), kRun, ": 'threads' is ", threads, ", not a thread count");
    o.threads = static_cast<int>(threads);
    o.log_every = io::json_integer(j, "log_every", kRun);
    o.log_experts_every = io::json_integer(j, "log_experts_every", kRun, 0);  // absent in runs from before
    o.eval_every = io::json_integer(j, "eval_every", kRun);
    o.eval_batches = io::json_integer(j, "eval_batches", kRun);
    o.checkpoint_every = io::json_integer(j, "checkpoint_every", kRun);
    o.keep_checkpoints = io::json_integer(j, "keep_checkpoints", kRun);
    o.max_bad_steps = io::json_integer(j, "max_bad_steps", kRun);
    o.inject_nan_step = io::json_integer(j, "inject_nan_step", kRun);
  } catch (const nlohmann::json::exception& e) {
    fail("run options (run.json) are incomplete or mistyped: ", e.what());
  }
  o.validate();
  return o;
}

}  // namespace nextn
