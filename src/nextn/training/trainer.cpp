#include "nextn/training/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>

#include "nextn/checkpoint/hf_checkpoint.h"
#include "nextn/config/model_config.h"
#include "nextn/data/token_dataset.h"
#include "nextn/data/window_loader.h"
#include "nextn/device/device.h"
#include "nextn/io/atomic_file.h"
#include "nextn/model/deepseek_v3.h"
#include "nextn/model/load_balance.h"
#include "nextn/model/objective.h"
#include "nextn/training/adamw.h"
#include "nextn/training/evaluator.h"
#include "nextn/training/expert_bias.h"
#include "nextn/training/metrics_log.h"
#include "nextn/training/run_checkpoint.h"
#include "nextn/training/stop_signal.h"
#include "nextn/util/error.h"
#include "nextn/util/runtime_info.h"

namespace fs = std::filesystem;

namespace nextn {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Steps run before a time budget is turned into a step count: inside the warmup, where the
// learning rate does not depend on the total yet.
// A --minutes budget is turned into a step count from the time of steps kCalibrationSkip ..
// kCalibrationSteps: the first steps are slower (page faults of fresh buffers, thread start-up)
// and would shorten the run by a third.
constexpr int64_t kCalibrationSkip = 3;
constexpr int64_t kCalibrationSteps = 10;

void check_run_dir_writable(const std::string& run_dir) {
  std::error_code error;
  fs::create_directories(run_dir, error);
  NEXTN_CHECK(!error, "cannot create run directory '", run_dir, "': ", error.message());
  const std::string probe = (fs::path(run_dir) / ".write-test").string();
  try {
    io::write_file_atomic(probe, "ok");
  } catch (const Error& e) {
    fail("run directory '", run_dir, "' is not writable: ", e.what());
  }
  fs::remove(probe);
}

void check_config_matches_dataset(const ModelConfig& config, const data::TokenDataset& dataset,
                                  const TrainOptions& options) {
  NEXTN_CHECK(config.vocab_size >= dataset.vocab_size(), "model config vocab_size (", config.vocab_size,
              ") is smaller than the dataset tokenizer's vocabulary (", dataset.vocab_size(), "): '",
              dataset.dir(), "' was made with another tokenizer");
  NEXTN_CHECK(config.eos_token_id == dataset.eos_id(), "model config eos_token_id (", config.eos_token_id,
              ") differs from the dataset tokenizer's EOS id (", dataset.eos_id(), ")");
  NEXTN_CHECK(options.seq_len <= config.max_position_embeddings, "--seq-len ", options.seq_len,
              " exceeds the model's max_position_embeddings (", config.max_position_embeddings, ")");
}

class TrainingRun {
 public:
  TrainingRun(const TrainOptions& options, bool resume) : options_(options), resume_(resume) {}

  TrainResult run();

 private:
  void open_inputs();
  void build_model_and_optimizer();
  void train_one_step(StepMetrics& metrics);
  void maybe_calibrate_total_steps(double step_seconds);
  void run_evaluation();
  void write_checkpoint();
  ObjectiveOptions objective_options(int64_t step) const;

  TrainOptions options_;
  bool resume_;
  ModelConfig config_;
  torch::Device device_{torch::kCPU};
  std::optional<data::TokenDataset> dataset_;
  std::optional<data::WindowLoader> loader_;
  std::string tokenizer_path_;
  DeepSeekV3 model_{nullptr};
  std::unique_ptr<AdamW> optimizer_;
  std::vector<torch::Tensor> params_;
  std::vector<Moe> moe_layers_;
  LrSchedule lr_;
  TrainerState state_;
  std::string resume_checkpoint_;
  JsonLinesLog log_;
  std::string last_checkpoint_;
  bool calibrating_ = false;
  Clock::time_point process_start_ = Clock::now();
};

void TrainingRun::open_inputs() {
  options_.validate();
  device_ = resolve_device(options_.device);
  if (resume_) {
    auto latest = latest_run_checkpoint(options_.run_dir);
    NEXTN_CHECK(latest.has_value(), "--resume: run directory '", options_.run_dir, "' has no checkpoint");
    resume_checkpoint_ = *latest;
    config_ = load_model_config((fs::path(resume_checkpoint_) / "config.json").string());
    if (!options_.config_path.empty() && io::file_exists(options_.config_path)) {
      ModelConfig given = load_model_config(options_.config_path);
      if (!options_.mtp) given.num_nextn_predict_layers = 0;
      given.torch_dtype = config_.torch_dtype;
      NEXTN_CHECK(model_config_to_json(given).dump() == model_config_to_json(config_).dump(), "--config '",
                  options_.config_path, "' does not match the model in checkpoint '", resume_checkpoint_, "'");
    }
  } else {
    NEXTN_CHECK(!latest_run_checkpoint(options_.run_dir).has_value(), "run directory '", options_.run_dir,
                "' already has checkpoints: pass --resume to continue it, or choose another --run");
    NEXTN_CHECK(!options_.config_path.empty(), "no model config given (--config)");
    config_ = load_model_config(options_.config_path);
    config_.torch_dtype = "float32";
    if (!options_.mtp) config_.num_nextn_predict_layers = 0;  // the next-token-only baseline
  }
  NEXTN_CHECK(fs::is_directory(options_.data_dir), "dataset directory '", options_.data_dir, "' does not exist");
  dataset_ = data::TokenDataset::open(options_.data_dir);
  tokenizer_path_ = (fs::path(options_.data_dir) / "tokenizer.json").string();
  check_config_matches_dataset(config_, *dataset_, options_);
  loader_.emplace(*dataset_, data::Split::kTrain, options_.batch_size, options_.seq_len, options_.seed);
  check_run_dir_writable(options_.run_dir);
}

void TrainingRun::build_model_and_optimizer() {
  torch::manual_seed(options_.seed);
  model_ = DeepSeekV3(config_);
  model_->to(device_);  // initialised on the CPU generator, so the weights do not depend on the device
  model_->train();
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (auto& p : model_->named_parameters()) {
    named.push_back({p.key(), p.value()});
    params_.push_back(p.value());
  }
  optimizer_ = std::make_unique<AdamW>(named, default_weight_decay(named, options_.decay_embedding), options_.adamw);
  moe_layers_ = model_->moe_layers();

  if (resume_) {
    state_ = load_run_checkpoint(resume_checkpoint_, *model_, *optimizer_);
    NEXTN_CHECK(state_.dataset_id == dataset_->fingerprint(data::Split::kTrain), "checkpoint '", resume_checkpoint_,
                "' was trained on another dataset than '", options_.data_dir, "'");
    loader_->restore(state_.loader_state);
  } else {
    state_.total_steps = options_.steps;
    state_.dataset_id = dataset_->fingerprint(data::Split::kTrain);
    calibrating_ = options_.minutes > 0;
    if (calibrating_) {
      options_.warmup_steps = std::max(options_.warmup_steps, kCalibrationSteps);
      state_.total_steps = std::numeric_limits<int32_t>::max();  // set after calibration
    }
  }
  lr_.shape = options_.lr_shape;
  lr_.peak = options_.lr;
  lr_.minimum = options_.lr * options_.min_lr_ratio;
  lr_.warmup_steps = options_.warmup_steps;
  lr_.decay_fraction = options_.decay_fraction;
  lr_.total_steps = state_.total_steps;
}

ObjectiveOptions TrainingRun::objective_options(int64_t step) const {
  ObjectiveOptions o;
  o.mtp_lambda = options_.mtp_lambda.at(step, state_.total_steps);
  o.sequence_balance_alpha = options_.balance == BalanceMode::kAuxFree ? options_.sequence_alpha : 0.0;
  o.batch_balance_alpha = options_.balance == BalanceMode::kAuxLoss ? options_.aux_alpha : 0.0;
  return o;
}

void TrainingRun::train_one_step(StepMetrics& m) {
  const int64_t step = state_.step;
  const double lr = lr_.at(step);
  const double gamma = options_.balance == BalanceMode::kAuxFree ? options_.bias_gamma.at(step, state_.total_steps) : 0.0;
  const ObjectiveOptions objective = objective_options(step);
  const bool run_mtp = config_.mtp_depth() > 0;

  optimizer_->zero_grad();
  ExpertLoadAccumulator loads;
  double loss = 0, main_loss = 0, main_accuracy = 0, balance = 0;
  std::vector<double> mtp_loss(config_.mtp_depth(), 0.0), mtp_accuracy(config_.mtp_depth(), 0.0);
  const double micro_weight = 1.0 / static_cast<double>(options_.grad_accum);
  for (int64_t micro = 0; micro < options_.grad_accum; ++micro) {
    data::Batch batch = loader_->next();
    auto inputs = batch.tokens.narrow(1, 0, options_.seq_len);
    auto labels = batch.tokens.narrow(1, 1, options_.seq_len);
    ModelOutput out;
    ObjectiveOutput obj;
    {
      TrainingPrecisionScope precision(device_);
      out = model_->forward(inputs.to(device_), ForwardOptions{run_mtp, true});
      obj = compute_objective(out, labels.to(device_), batch.segment_ids.to(device_), objective);
    }
    torch::Tensor scaled = obj.total * micro_weight;
    if (step + 1 == options_.inject_nan_step) scaled = scaled * std::numeric_limits<double>::quiet_NaN();
    scaled.backward();
    loss += scaled.item<double>();
    main_loss += obj.main_loss.item<double>() * micro_weight;
    main_accuracy += obj.main_accuracy.item<double>() * micro_weight;
    balance += obj.balance_loss.item<double>() * micro_weight;
    for (size_t k = 0; k < obj.mtp_loss.size(); ++k) {
      mtp_loss[k] += obj.mtp_loss[k].item<double>() * micro_weight;
      mtp_accuracy[k] += obj.mtp_accuracy[k].item<double>() * micro_weight;
    }
    loads.add(out.moe_stats);
  }

  const double grad_norm = clip_grad_norm(params_, options_.clip_grad);
  m.skipped = !std::isfinite(loss) || !std::isfinite(grad_norm);
  if (m.skipped) {
    // Skip: no parameter, optimizer moment or expert bias changes.
    optimizer_->zero_grad();
    ++state_.skipped_steps;
    ++state_.consecutive_bad_steps;
  } else {
    optimizer_->step(lr);
    if (gamma > 0.0) update_expert_bias(moe_layers_, loads.counts(), gamma, options_.bias_recenter);
    state_.consecutive_bad_steps = 0;
  }
  ++state_.step;
  state_.tokens_seen += options_.batch_size * options_.seq_len * options_.grad_accum;

  m.step = state_.step;
  m.loss = loss;
  m.main_loss = main_loss;
  m.main_accuracy = main_accuracy;
  m.mtp_loss = mtp_loss;
  m.mtp_accuracy = mtp_accuracy;
  m.balance_loss = balance;
  m.lr = lr;
  m.grad_norm = grad_norm;
  m.mtp_lambda = objective.mtp_lambda;
  m.bias_gamma = gamma;
  m.max_vio_layers.clear();
  for (const auto& counts : loads.counts()) m.max_vio_layers.push_back(max_violation(counts));
  m.max_vio_batch = 0;
  for (double v : m.max_vio_layers) m.max_vio_batch += v / static_cast<double>(m.max_vio_layers.size());
  m.tokens_seen = state_.tokens_seen;
  m.skipped_steps = state_.skipped_steps;
}

void TrainingRun::maybe_calibrate_total_steps(double step_seconds) {
  if (!calibrating_ || state_.step < kCalibrationSteps) return;
  calibrating_ = false;
  // Leave ~8% of the budget for evaluations and checkpoints.
  const double remaining = options_.minutes * 60.0 * 0.92 - seconds_since(process_start_);
  const int64_t more = static_cast<int64_t>(std::max(0.0, remaining) / std::max(step_seconds, 1e-6));
  state_.total_steps = std::max<int64_t>(state_.step + more, state_.step + 1);
  lr_.total_steps = state_.total_steps;
  std::printf("time budget %s: %.3f s/step, training for %lld steps\n", format_duration(options_.minutes * 60).c_str(),
              step_seconds, static_cast<long long>(state_.total_steps));
}

void TrainingRun::run_evaluation() {
  EvalOptions eval;
  eval.batch_size = options_.batch_size;
  eval.seq_len = options_.seq_len;
  eval.max_batches = options_.eval_batches;
  eval.mtp = config_.mtp_depth() > 0;
  EvalMetrics m = evaluate(*model_, *dataset_, eval);
  m.step = state_.step;
  std::cout << format_eval_line(m) << std::endl;
  log_.write(to_json(m));
}

void TrainingRun::write_checkpoint() {
  state_.loader_state = loader_->state();
  last_checkpoint_ = save_run_checkpoint(options_.run_dir, *model_, *optimizer_, state_, tokenizer_path_,
                                         options_.keep_checkpoints);
  std::cout << "checkpoint " << last_checkpoint_ << std::endl;
}

TrainResult TrainingRun::run() {
  open_inputs();
  build_model_and_optimizer();
  remove_incomplete_checkpoints(options_.run_dir);
  io::write_file_atomic((fs::path(options_.run_dir) / "run.json").string(),
                        train_options_to_json(options_).dump(2) + "\n");
  log_.open((fs::path(options_.run_dir) / "metrics.jsonl").string(), resume_ ? state_.step : 0);

  ParameterCount count = count_parameters(config_);
  std::cout << describe(runtime_info()) << "\n"
            << "model: " << count.total / 1e6 << "M parameters (" << count.activated / 1e6 << "M activated), "
            << config_.num_hidden_layers << " layers, MTP depth " << config_.mtp_depth() << " ("
            << to_string(config_.mtp_kind) << "), balance " << to_string(options_.balance) << ", device "
            << device_.str() << " (" << training_precision(device_) << ")\n"
            << "data: " << dataset_->num_tokens(data::Split::kTrain) << " training tokens in " << options_.data_dir
            << "; batch " << options_.batch_size << " x " << options_.seq_len << " x " << options_.grad_accum
            << " accumulation\n";
  if (resume_) std::cout << "resuming from " << resume_checkpoint_ << " at step " << state_.step << "\n";

  StopSignal stop;
  TrainResult result;
  const double previous_elapsed = state_.elapsed_seconds;
  const int64_t first_step = state_.step;
  auto loop_start = Clock::now();
  auto interval_start = loop_start;
  auto calibration_start = loop_start;
  int64_t interval_tokens = 0;
  StepMetrics metrics;
  metrics.mtp_loss.assign(config_.mtp_depth(), 0.0);
  while (state_.step < state_.total_steps) {
    train_one_step(metrics);
    interval_tokens += options_.batch_size * options_.seq_len * options_.grad_accum;
    if (state_.step - first_step == kCalibrationSkip) calibration_start = Clock::now();
    if (state_.step - first_step > kCalibrationSkip) {
      maybe_calibrate_total_steps(seconds_since(calibration_start) / (state_.step - first_step - kCalibrationSkip));
    }

    NEXTN_CHECK(state_.consecutive_bad_steps < options_.max_bad_steps, "stopping: ", state_.consecutive_bad_steps,
                " consecutive steps had a non-finite loss or gradient (last at step ", state_.step, "); ",
                last_checkpoint_.empty() ? std::string("no checkpoint was written in this process")
                                         : "the last good checkpoint is " + last_checkpoint_);

    state_.elapsed_seconds = previous_elapsed + seconds_since(loop_start);
    metrics.total_steps = state_.total_steps;
    metrics.elapsed_seconds = state_.elapsed_seconds;
    const double per_step = seconds_since(loop_start) / static_cast<double>(state_.step - first_step);
    metrics.eta_seconds = per_step * static_cast<double>(state_.total_steps - state_.step);
    const bool last = state_.step == state_.total_steps;
    const bool out_of_time = options_.minutes > 0 && seconds_since(process_start_) > options_.minutes * 60.0;
    if (state_.step % options_.log_every == 0 || last || metrics.skipped) {
      metrics.tokens_per_second = interval_tokens / std::max(seconds_since(interval_start), 1e-9);
      interval_start = Clock::now();
      interval_tokens = 0;
      std::cout << format_step_line(metrics) << std::endl;
      log_.write(to_json(metrics));
    }
    // The run's last step gets an evaluation, also when the time budget ends it early (a signal
    // asks for a quick exit: checkpoint only).
    const bool ends_by_time = out_of_time && !stop.requested();
    if (last || ends_by_time || (options_.eval_every > 0 && state_.step % options_.eval_every == 0)) {
      run_evaluation();
    }
    const bool stop_now = stop.requested() || out_of_time;
    if (last || stop_now || (options_.checkpoint_every > 0 && state_.step % options_.checkpoint_every == 0)) {
      write_checkpoint();
    }
    if (stop_now) {
      result.stopped_by_signal = stop.requested();
      result.stopped_by_time_budget = !stop.requested();
      std::cout << (stop.requested() ? "stopped by signal " + std::to_string(stop.signal_number())
                                     : std::string("time budget reached"))
                << " at step " << state_.step << " of " << state_.total_steps << std::endl;
      break;
    }
  }
  result.steps_done = state_.step;
  result.last_checkpoint = last_checkpoint_;
  return result;
}

}  // namespace

TrainResult train(const TrainOptions& options, bool resume) { return TrainingRun(options, resume).run(); }

}  // namespace nextn
