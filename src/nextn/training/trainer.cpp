#include "nextn/training/trainer.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>

#include "nextn/checkpoint/hf_checkpoint.h"
#include "nextn/config/model_config.h"
#include "nextn/data/token_dataset.h"
#include "nextn/data/window_loader.h"
#include "nextn/device/device.h"
#include "nextn/device/cpu_gemm.h"
#include "nextn/device/precision.h"
#include "nextn/distributed/expert_parallel.h"
#include "nextn/distributed/gradient_sync.h"
#include "nextn/io/atomic_file.h"
#include "nextn/model/deepseek_v3.h"
#include "nextn/model/load_balance.h"
#include "nextn/model/objective.h"
#include "nextn/training/adamw.h"
#include "nextn/training/evaluator.h"
#include "nextn/training/expert_bias.h"
#include "nextn/training/metrics_log.h"
#include "nextn/training/model_dataset.h"
#include "nextn/training/run_checkpoint.h"
#include "nextn/training/run_lock.h"
#include "nextn/distributed/local_launcher.h"
#include "nextn/training/sharded_checkpoint.h"
#include "nextn/training/stop_signal.h"
#include "nextn/util/error.h"
#include "nextn/util/memory_info.h"
#include "nextn/util/runtime_info.h"
#include "nextn/util/sha256.h"

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

// The options every rank must share; BLAS threads may differ between machines.
std::string train_options_json_for_ranks(TrainOptions options) {
  options.threads = 0;
  return train_options_to_json(options).dump();
}

uint64_t hash_of(const std::string& text) {
  Sha256 hash;
  hash.update(text);
  auto digest = hash.digest();
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value = value << 8 | digest[i];
  return value;
}

class TrainingRun {
 public:
  TrainingRun(const TrainOptions& options, bool resume, dist::Cluster* cluster)
      : options_(options), resume_(resume), cluster_(cluster != nullptr && cluster->distributed() ? cluster : nullptr) {}

  TrainResult run();

 private:
  void open_inputs();
  void choose_checkpoint();
  void check_validation_split();
  double budget_seconds_used() const;
  void keep_global_batch();
  void check_ranks_agree();
  void build_model_and_optimizer();
  void setup_gradient_sync();
  void train_one_step(StepMetrics& metrics);
  void reduce_step_over_ranks(StepMetrics& m, ExpertLoadAccumulator& loads);
  double clip_gradients();
  void maybe_calibrate_total_steps(double step_seconds);
  void run_evaluation();
  void write_checkpoint();
  ObjectiveOptions objective_options(int64_t step) const;
  bool is_main() const { return cluster_ == nullptr || cluster_->is_main(); }
  int rank() const { return cluster_ == nullptr ? 0 : cluster_->rank(); }
  int world() const { return cluster_ == nullptr ? 1 : cluster_->world_size(); }
  // An or over the ranks (every rank gets the same answer).
  bool any_rank(bool value);

  TrainOptions options_;
  bool resume_;
  std::optional<RunDirectoryLock> run_lock_;  // rank 0: the run directory's one writer
  ModelConfig config_;
  torch::Device device_{torch::kCPU};
  Precision precision_ = Precision::kFp32;
  CpuFp32Gemm fp32_gemm_ = CpuFp32Gemm::kBlas;
  int cpu_threads_ = 1;  // the threads of the step's products (device/precision.h)
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
  bool evaluate_ = true;  // false when the validation split has no window
  double elapsed_before_ = 0;  // training seconds of the processes before this one (resume)
  Clock::time_point process_start_ = Clock::now();

  dist::Cluster* cluster_;  // null for a single process
  std::vector<std::shared_ptr<dist::AllToAllExperts>> exchanges_;  // expert-parallel layers
  std::vector<torch::Tensor> replicated_params_, expert_params_;    // expert_params_: sharded ones
  std::unique_ptr<dist::GradientSync> gradient_sync_;
  std::vector<torch::Tensor> step_loads_;  // the last step's expert counts per MoE layer (global batch)
};

// {"type": "experts"}: each MoE layer's token counts of the step and its bias after the step.
nlohmann::json experts_record(int64_t step, const std::vector<torch::Tensor>& loads, std::vector<Moe>& layers) {
  nlohmann::json load = nlohmann::json::array(), bias = nlohmann::json::array();
  for (const auto& counts : loads) {
    auto c = counts.to(torch::kCPU).to(torch::kLong).contiguous();
    load.push_back(std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()));
  }
  for (size_t l = 0; l < loads.size() && l < layers.size(); ++l) {
    auto b = layers[l]->gate->e_score_correction_bias.to(torch::kCPU).to(torch::kDouble).contiguous();
    bias.push_back(std::vector<double>(b.data_ptr<double>(), b.data_ptr<double>() + b.numel()));
  }
  return {{"type", "experts"}, {"step", step}, {"load", load}, {"bias", bias}};
}

bool TrainingRun::any_rank(bool value) {
  if (cluster_ == nullptr) return value;
  auto flag = torch::tensor({value ? int64_t{1} : int64_t{0}}, torch::kLong);
  cluster_->world()->all_reduce_max(flag);
  return flag.item<int64_t>() != 0;
}

void TrainingRun::open_inputs() {
  options_.validate();
  // run.json keeps the inputs as absolute paths, so that --resume works from any directory.
  if (!options_.data_dir.empty()) options_.data_dir = fs::absolute(options_.data_dir).lexically_normal().string();
  if (!options_.config_path.empty()) {
    options_.config_path = fs::absolute(options_.config_path).lexically_normal().string();
  }
  device_ = resolve_device(options_.device);
  if (options_.precision.empty() && !resume_) options_.precision = to_string(default_precision(device_));
  precision_ = options_.precision.empty() ? default_precision(device_) : precision_from_string(options_.precision);
  if (options_.fp32_gemm.empty() && !resume_) options_.fp32_gemm = to_string(default_training_fp32_gemm());
  fp32_gemm_ = options_.fp32_gemm.empty() ? CpuFp32Gemm::kBlas : cpu_fp32_gemm_from_string(options_.fp32_gemm);
  cpu_threads_ = options_.threads > 0 ? options_.threads : std::max(blas_threads(), 1);
  if (device_.is_cpu()) use_cpu_training_threads(precision_, cpu_threads_, fp32_gemm_);
  if (resume_) {
    // Before anything in the directory is read or set aside: another job may be writing it.
    if (is_main() && fs::is_directory(options_.run_dir)) run_lock_.emplace(options_.run_dir);
    choose_checkpoint();
    config_ = load_model_config((fs::path(resume_checkpoint_) / "config.json").string());
    if (!options_.config_path.empty() && io::file_exists(options_.config_path)) {
      ModelConfig given = load_model_config(options_.config_path);
      if (!options_.mtp) given.num_nextn_predict_layers = 0;
      given.torch_dtype = config_.torch_dtype;
      NEXTN_CHECK(model_config_to_json(given).dump() == model_config_to_json(config_).dump(), "--config '",
                  options_.config_path, "' does not match the model in checkpoint '", resume_checkpoint_, "'");
    }
    keep_global_batch();
  } else {
    NEXTN_CHECK(!latest_run_checkpoint(options_.run_dir).has_value(), "run directory '", options_.run_dir,
                "' already has checkpoints: pass --resume to continue it, or choose another --run");
    NEXTN_CHECK(!options_.config_path.empty(), "no model config given (--config)");
    config_ = load_model_config(options_.config_path);
    config_.torch_dtype = "float32";
    if (!options_.mtp) config_.num_nextn_predict_layers = 0;  // the next-token-only baseline
  }
  if (cluster_ != nullptr) dist::check_expert_parallel_layout(config_, cluster_->expert_parallel());
  NEXTN_CHECK(fs::is_directory(options_.data_dir), "dataset directory '", options_.data_dir, "' does not exist");
  dataset_ = resume_ ? open_dataset_for_model(options_.data_dir, resume_checkpoint_, config_.vocab_size)
                    : data::TokenDataset::open(options_.data_dir);
  tokenizer_path_ = (fs::path(options_.data_dir) / "tokenizer.json").string();
  check_config_matches_dataset(config_, *dataset_, options_);
  check_validation_split();
  // Every rank draws the global micro-batch (ranks x batch_size windows) and reads its own rows.
  loader_.emplace(*dataset_, data::Split::kTrain, options_.batch_size * world(), options_.seq_len, options_.seed);
  if (is_main()) {
    check_run_dir_writable(options_.run_dir);
    if (!run_lock_) run_lock_.emplace(options_.run_dir);
  }
  check_ranks_agree();
}

// A validation split with no window of seq_len + 1 tokens cannot be evaluated: say so before the
// first step and train without evaluations, rather than fail at the end with the steps unsaved.
void TrainingRun::check_validation_split() {
  evaluate_ = data::EvalWindows(*dataset_, data::Split::kValidation, 1, options_.seq_len).num_windows() > 0;
  if (evaluate_ || !is_main()) return;
  std::cout << "warning: the validation split of '" << options_.data_dir << "' holds "
            << dataset_->num_tokens(data::Split::kValidation) << " tokens in no window of " << options_.seq_len + 1
            << " (--seq-len + 1): this run is not evaluated (prepare the data with a larger --validation-fraction, "
               "or train with a shorter --seq-len)"
            << std::endl;
}

// The newest checkpoint; every rank must see the same one (a run directory on a shared file
// system, or the same copy on every machine).
void TrainingRun::choose_checkpoint() {
  // The newest checkpoint whose files match their checksums; a corrupt newer one is set aside.
  const ValidCheckpoint valid = latest_valid_run_checkpoint(options_.run_dir);
  std::optional<std::string> latest;
  if (!valid.dir.empty()) latest = valid.dir;
  std::string problems;
  for (const auto& [dir, problem] : valid.corrupt) problems += "\n  " + problem;
  NEXTN_CHECK(latest.has_value() || cluster_ != nullptr, "--resume: run directory '", options_.run_dir, "' has no ",
              problems.empty() ? "checkpoint" : "intact checkpoint:" + problems);
  if (cluster_ != nullptr) {
    const int64_t mine = latest ? read_trainer_state(*latest).step : -1;
    auto steps = cluster_->world()->all_gather(torch::tensor({mine}, torch::kLong));
    for (int r = 0; r < world(); ++r) {
      const int64_t theirs = steps[r].item<int64_t>();
      NEXTN_CHECK(theirs == steps[0].item<int64_t>(), "--resume: rank ", r, " sees ",
                  theirs < 0 ? std::string("no checkpoint") : "the checkpoint of step " + std::to_string(theirs),
                  " in '", options_.run_dir, "' but rank 0 sees ",
                  steps[0].item<int64_t>() < 0 ? std::string("none")
                                               : "step " + std::to_string(steps[0].item<int64_t>()),
                  ": every rank must read the same run directory (a shared file system)");
    }
    NEXTN_CHECK(latest.has_value(), "--resume: run directory '", options_.run_dir, "' has no ",
                problems.empty() ? "checkpoint" : "intact checkpoint:" + problems);
  }
  resume_checkpoint_ = *latest;
  if (!is_main()) return;
  for (const auto& [dir, problem] : valid.corrupt) {
    std::cout << "warning: " << problem << "\n  set aside as '" << set_aside_corrupt_checkpoint(dir)
              << "'; resuming from '" << resume_checkpoint_ << "'" << std::endl;
  }
}

// A run resumed on another number of ranks keeps its global batch by changing the micro-batch.
void TrainingRun::keep_global_batch() {
  const int64_t global = read_trainer_state(resume_checkpoint_).global_batch;
  const int64_t now = world() * options_.batch_size * options_.grad_accum;
  if (global == 0 || global == now) return;
  const int64_t per_micro_batch = world() * options_.grad_accum;
  NEXTN_CHECK(global % per_micro_batch == 0, "--resume: the run's global batch is ", global, " windows, which ",
              world(), " ranks x ", options_.grad_accum, " accumulation steps cannot split evenly");
  const int64_t micro = global / per_micro_batch;
  if (is_main()) {
    std::cout << "resuming on " << world() << (world() == 1 ? " process" : " ranks") << ": micro-batch " << micro
              << " (was " << options_.batch_size << ") keeps the global batch of " << global << " windows\n";
  }
  options_.batch_size = micro;
}

// Ranks that disagree on what they train (another config, other data, other options) would
// compute garbage together: compare hashes with rank 0's before any work.
void TrainingRun::check_ranks_agree() {
  if (cluster_ == nullptr) return;
  std::vector<std::pair<std::string, std::string>> parts = {
      {"model config", model_config_to_json(config_).dump()},
      {"dataset", dataset_->fingerprint(data::Split::kTrain) + dataset_->fingerprint(data::Split::kValidation)},
      {"resume checkpoint", resume_checkpoint_}};
  // Each training option on its own, so that a refusal names it (every rank runs this binary:
  // the same keys in the same order).
  const nlohmann::json options = nlohmann::json::parse(train_options_json_for_ranks(options_));
  for (const auto& [key, value] : options.items()) parts.push_back({"training option '" + key + "'", value.dump()});
  std::vector<int64_t> mine;
  for (const auto& [name, text] : parts) mine.push_back(static_cast<int64_t>(hash_of(text)));
  auto all = cluster_->world()->all_gather(torch::tensor(mine, torch::kLong));
  for (int r = 1; r < world(); ++r) {
    for (size_t i = 0; i < parts.size(); ++i) {
      NEXTN_CHECK(all[r][i].item<int64_t>() == all[0][i].item<int64_t>(), "rank ", r, "'s ", parts[i].first,
                  " differs from rank 0's: every rank must be started with the same config, data and options");
    }
  }
}

void TrainingRun::build_model_and_optimizer() {
  // One process on the CPU holds all of it (ranks hold a share of the experts' state, a GPU run
  // holds it on the GPU): the model's own check below covers the rest.
  if (cluster_ == nullptr && device_.is_cpu()) {
    const int64_t parameters = count_parameters(config_).total;
    check_fits_in_memory(16.0 * static_cast<double>(parameters),
                         cat("training a model of ", parameters, " parameters (weights, gradients and AdamW's two "
                             "moments in float32, before activations)"));
  }
  torch::manual_seed(options_.seed);
  model_ = DeepSeekV3(config_);
  model_->to(device_);  // initialised on the CPU generator, so the weights do not depend on the device
  model_->train();
  // A checkpoint holds every expert: load it whole, then keep this rank's slice.
  if (resume_) load_weights(*model_, resume_checkpoint_);
  if (cluster_ != nullptr) exchanges_ = dist::shard_experts(*model_, *cluster_);
  if (!exchanges_.empty()) expert_params_ = dist::expert_parameters(*model_);

  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (auto& p : model_->named_parameters()) {
    named.push_back({p.key(), p.value()});
    params_.push_back(p.value());
    const bool sharded = std::any_of(expert_params_.begin(), expert_params_.end(), [&](const torch::Tensor& e) {
      return e.unsafeGetTensorImpl() == p.value().unsafeGetTensorImpl();
    });
    if (!sharded) replicated_params_.push_back(p.value());
  }
  optimizer_ = std::make_unique<AdamW>(named, default_weight_decay(named, options_.decay_embedding), options_.adamw);
  moe_layers_ = model_->moe_layers();

  if (resume_) {
    OptimizerCheckpoint saved = read_optimizer_checkpoint(resume_checkpoint_);
    slice_expert_optimizer_state(saved.tensors, *model_, *optimizer_);
    optimizer_->load_state(saved.tensors, saved.steps);
    restore_cpu_rng(saved.rng_state);
    state_ = read_trainer_state(resume_checkpoint_);
    elapsed_before_ = state_.elapsed_seconds;
    // A timed run killed before it turned its budget into steps: calibrate again, on what is left.
    calibrating_ = options_.minutes > 0 && state_.total_steps >= kCalibratingSteps;
    NEXTN_CHECK(state_.dataset_id == dataset_->fingerprint(data::Split::kTrain), "checkpoint '", resume_checkpoint_,
                "' was trained on another dataset than '", options_.data_dir, "'");
    loader_->restore(state_.loader_state);
  } else {
    state_.total_steps = options_.steps;
    state_.dataset_id = dataset_->fingerprint(data::Split::kTrain);
    calibrating_ = options_.minutes > 0;
    if (calibrating_) {
      options_.warmup_steps = std::max(options_.warmup_steps, kCalibrationSteps);
      state_.total_steps = kCalibratingSteps;  // set after calibration
    }
  }
  state_.global_batch = world() * options_.batch_size * options_.grad_accum;
  lr_.shape = options_.lr_shape;
  lr_.peak = options_.lr;
  lr_.minimum = options_.lr * options_.min_lr_ratio;
  lr_.warmup_steps = options_.warmup_steps;
  lr_.decay_fraction = options_.decay_fraction;
  lr_.total_steps = state_.total_steps;
  setup_gradient_sync();
}

void TrainingRun::setup_gradient_sync() {
  if (cluster_ == nullptr) return;
  gradient_sync_ = std::make_unique<dist::GradientSync>(replicated_params_, cluster_->gradients(), expert_params_,
                                                        cluster_->expert_data(), world(),
                                                        static_cast<int64_t>(options_.bucket_mb * (1 << 20)));
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
    // This rank's rows of the global micro-batch.
    data::Batch batch = loader_->next_slice(rank() * options_.batch_size, options_.batch_size);
    auto inputs = batch.tokens.narrow(1, 0, options_.seq_len);
    auto labels = batch.tokens.narrow(1, 1, options_.seq_len);
    ModelOutput out;
    ObjectiveOutput obj;
    {
      TrainingPrecisionScope precision(device_, precision_);
      out = model_->forward(inputs.to(device_), ForwardOptions{run_mtp, true, options_.fused_head});
      obj = compute_objective(out, labels.to(device_), batch.segment_ids.to(device_), objective);
    }
    torch::Tensor scaled = obj.total * micro_weight;
    if (step + 1 == options_.inject_nan_step) scaled = scaled * std::numeric_limits<double>::quiet_NaN();
    // The last micro-batch's backward produces the step's gradients: their all-reduce starts
    // bucket by bucket while it runs.
    if (gradient_sync_ && micro + 1 == options_.grad_accum) gradient_sync_->arm();
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
  if (gradient_sync_) gradient_sync_->finish();
  m.loss = loss;
  m.main_loss = main_loss;
  m.main_accuracy = main_accuracy;
  m.mtp_loss = mtp_loss;
  m.mtp_accuracy = mtp_accuracy;
  m.balance_loss = balance;
  reduce_step_over_ranks(m, loads);

  const double grad_norm = clip_gradients();
  m.skipped = !std::isfinite(m.loss) || !std::isfinite(grad_norm);
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
  state_.tokens_seen += state_.global_batch * options_.seq_len;

  m.step = state_.step;
  m.lr = lr;
  m.grad_norm = grad_norm;
  m.mtp_lambda = objective.mtp_lambda;
  m.bias_gamma = gamma;
  step_loads_ = loads.counts();
  m.max_vio_layers.clear();
  for (const auto& counts : loads.counts()) m.max_vio_layers.push_back(max_violation(counts));
  m.max_vio_batch = 0;
  for (double v : m.max_vio_layers) m.max_vio_batch += v / static_cast<double>(m.max_vio_layers.size());
  m.tokens_seen = state_.tokens_seen;
  m.skipped_steps = state_.skipped_steps;
}

// The step's figures over the global batch: losses averaged over the ranks (each the mean of its
// own equal share), expert loads summed, so that MaxVio and the bias update (Eq. 16's counts) see
// the global batch, exactly as one process with that batch would.
void TrainingRun::reduce_step_over_ranks(StepMetrics& m, ExpertLoadAccumulator& loads) {
  if (cluster_ == nullptr) return;
  std::vector<double> values = {m.loss, m.main_loss, m.main_accuracy, m.balance_loss};
  values.insert(values.end(), m.mtp_loss.begin(), m.mtp_loss.end());
  values.insert(values.end(), m.mtp_accuracy.begin(), m.mtp_accuracy.end());
  auto summed = torch::tensor(values, torch::kDouble);
  cluster_->world()->all_reduce_sum(summed);
  summed.div_(static_cast<double>(world()));
  const double* v = summed.data_ptr<double>();
  m.loss = v[0];
  m.main_loss = v[1];
  m.main_accuracy = v[2];
  m.balance_loss = v[3];
  const size_t depth = m.mtp_loss.size();
  for (size_t k = 0; k < depth; ++k) {
    m.mtp_loss[k] = v[4 + k];
    m.mtp_accuracy[k] = v[4 + depth + k];
  }
  if (!loads.counts().empty()) {
    auto all = torch::cat(loads.counts()).to(torch::kCPU).contiguous();
    cluster_->world()->all_reduce_sum(all);
    loads.set_counts(all.split(loads.counts().front().numel()));
  }
}

// The global gradient norm; with sharded experts their squared norms are summed over the
// expert-parallel group (each expert's gradient lives on one rank of it).
double TrainingRun::clip_gradients() {
  if (expert_params_.empty()) return clip_grad_norm(params_, options_.clip_grad);
  return clip_grad_norm(replicated_params_, expert_params_, options_.clip_grad, [&](double local) {
    auto value = torch::tensor({local}, torch::kDouble);
    cluster_->experts()->all_reduce_sum(value);
    return value.item<double>();
  });
}

void TrainingRun::maybe_calibrate_total_steps(double step_seconds) {
  if (!calibrating_ || state_.step < kCalibrationSteps) return;
  calibrating_ = false;
  // Leave ~8% of the budget for evaluations and checkpoints.
  const double remaining = options_.minutes * 60.0 * 0.92 - budget_seconds_used();
  const int64_t more = static_cast<int64_t>(std::max(0.0, remaining) / std::max(step_seconds, 1e-6));
  state_.total_steps = std::max<int64_t>(state_.step + more, state_.step + 1);
  if (cluster_ != nullptr) {  // rank 0's estimate, so that every rank stops at the same step
    auto total = torch::tensor({state_.total_steps}, torch::kLong);
    cluster_->world()->broadcast(total, 0);
    state_.total_steps = total.item<int64_t>();
  }
  lr_.total_steps = state_.total_steps;
  if (!is_main()) return;
  std::printf("time budget %s: %.3f s/step, training for %lld steps\n", format_duration(options_.minutes * 60).c_str(),
              step_seconds, static_cast<long long>(state_.total_steps));
}

// The time budget (--minutes) spans every process of the run: a resumed run has what is left.
double TrainingRun::budget_seconds_used() const { return elapsed_before_ + seconds_since(process_start_); }

void TrainingRun::run_evaluation() {
  EvalOptions eval;
  eval.batch_size = options_.batch_size;
  eval.seq_len = options_.seq_len;
  eval.max_batches = options_.eval_batches;
  eval.mtp = config_.mtp_depth() > 0;
  // Evaluation computes in fp32 whatever the training precision (the model's own loss, as
  // `nextn eval` and inference see it), with fp32's threads.
  if (device_.is_cpu()) use_cpu_training_threads(Precision::kFp32, cpu_threads_, fp32_gemm_);
  EvalMetrics m = evaluate(*model_, *dataset_, eval, cluster_);
  if (device_.is_cpu()) use_cpu_training_threads(precision_, cpu_threads_, fp32_gemm_);
  m.step = state_.step;
  if (!is_main()) return;
  std::cout << format_eval_line(m) << std::endl;
  log_.write(to_json(m));
}

// Complete everywhere or not at all: the experts' ranks gather to rank 0, which writes a temporary
// directory; only when every rank has reached this point (the barrier) does rank 0 rename it
// into place, and then tells every rank whether it succeeded.
void TrainingRun::write_checkpoint() {
  state_.loader_state = loader_->state();
  const GatheredState gathered = gather_for_checkpoint(*model_, *optimizer_, cluster_);
  std::string error;
  std::optional<PreparedCheckpoint> prepared;
  if (is_main()) {
    try {
      prepared = prepare_run_checkpoint(options_.run_dir, *model_, gathered.full_experts, gathered.optimizer_tensors,
                                        optimizer_->steps_taken(), state_, tokenizer_path_);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  if (cluster_ != nullptr) {
    try {
      cluster_->world()->barrier();
    } catch (...) {
      if (prepared) discard_run_checkpoint(*prepared);
      throw;
    }
  }
  if (prepared) {
    try {
      last_checkpoint_ = commit_run_checkpoint(*prepared, options_.keep_checkpoints);
    } catch (const std::exception& e) {
      discard_run_checkpoint(*prepared);
      error = e.what();
    }
  }
  if (any_rank(!error.empty())) {
    if (!error.empty()) fail(error);
    fail("rank 0 could not write the checkpoint of step ", state_.step, " (its error is in its output)");
  }
  if (!is_main()) {
    last_checkpoint_ = (fs::path(checkpoints_dir(options_.run_dir)) / checkpoint_dir_name(state_.step)).string();
    return;
  }
  std::cout << "checkpoint " << last_checkpoint_ << std::endl;
}

TrainResult TrainingRun::run() {
  open_inputs();
  build_model_and_optimizer();
  if (is_main()) {
    remove_incomplete_checkpoints(options_.run_dir);
    io::write_file_atomic((fs::path(options_.run_dir) / "run.json").string(),
                          train_options_to_json(options_).dump(2) + "\n");
    log_.open((fs::path(options_.run_dir) / "metrics.jsonl").string(), resume_ ? state_.step : 0);

    ParameterCount count = count_parameters(config_);
    std::cout << describe(runtime_info()) << "\n"
              << "model: " << count.total / 1e6 << "M parameters (" << count.activated / 1e6 << "M activated), "
              << config_.num_hidden_layers << " layers, MTP depth " << config_.mtp_depth() << " ("
              << to_string(config_.mtp_kind) << "), balance " << to_string(options_.balance) << ", device "
              << device_.str() << ", precision " << to_string(precision_)
              << (device_.is_cpu() ? ", fp32 products " + to_string(fp32_gemm_) : std::string()) << "\n"
              << "data: " << dataset_->num_tokens(data::Split::kTrain) << " training tokens in " << options_.data_dir
              << "; batch " << options_.batch_size << " x " << options_.seq_len << " x " << options_.grad_accum
              << " accumulation";
    if (cluster_ != nullptr) {
      std::cout << " per rank (global batch " << state_.global_batch << " windows)\n"
                << "distributed: " << cluster_->describe() << "; gradient buckets " << gradient_sync_->num_buckets();
    }
    std::cout << "\n";
    if (resume_) std::cout << "resuming from " << resume_checkpoint_ << " at step " << state_.step << "\n";
  }

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
  metrics.ranks = world();
  dist::CommStats interval_comm;
  double interval_step_seconds = 0;
  dist::ExpertTraffic interval_traffic;
  if (cluster_ != nullptr) cluster_->take_stats();  // start-up's collectives are not a step's
  const int restart = cluster_ != nullptr ? cluster_->env().restart_count : 0;
  while (state_.step < state_.total_steps) {
    if (options_.fault_step == state_.step + 1 && options_.fault_rank == rank() && restart == 0) {
      std::cout.flush();
      std::raise(options_.fault_signal);  // testing: a crash (SIGKILL) or a hang (SIGSTOP) of this rank
    }
    const auto step_start = Clock::now();
    train_one_step(metrics);
    interval_tokens += state_.global_batch * options_.seq_len;
    if (cluster_ != nullptr) {
      interval_step_seconds += seconds_since(step_start);
      interval_comm += cluster_->take_stats();
      for (auto& exchange : exchanges_) {
        interval_traffic += exchange->traffic();
        exchange->reset_traffic();
      }
    }
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
    // Rank 0's clock and any rank's signal decide for everyone, so that all stop at one step.
    bool signalled = stop.requested();
    bool out_of_time = is_main() && options_.minutes > 0 && budget_seconds_used() > options_.minutes * 60.0;
    if (cluster_ != nullptr) {
      auto flags = torch::tensor({int64_t{signalled}, int64_t{out_of_time}}, torch::kLong);
      cluster_->world()->all_reduce_max(flags);
      signalled = flags[0].item<int64_t>() != 0;
      out_of_time = flags[1].item<int64_t>() != 0;
    }
    if (state_.step % options_.log_every == 0 || last || metrics.skipped) {
      metrics.tokens_per_second = interval_tokens / std::max(seconds_since(interval_start), 1e-9);
      if (cluster_ != nullptr) {
        metrics.step_seconds = interval_step_seconds;
        metrics.comm_seconds = interval_comm.seconds();
        metrics.collectives = nlohmann::json::object();
        for (int k = 0; k < dist::kCollectiveKinds; ++k) {
          const auto& c = interval_comm.by_kind[k];
          if (c.calls == 0) continue;
          metrics.collectives[dist::to_string(static_cast<dist::Collective>(k))] = {
              {"calls", c.calls}, {"bytes", c.bytes}, {"seconds", c.seconds}};
        }
        metrics.all_to_all_bytes_per_token = interval_traffic.bytes_per_token();
        interval_comm = dist::CommStats{};
        interval_step_seconds = 0;
        interval_traffic = dist::ExpertTraffic{};
      }
      interval_start = Clock::now();
      interval_tokens = 0;
      if (is_main()) {
        std::cout << format_step_line(metrics) << std::endl;
        log_.write(to_json(metrics));
      }
    }
    if (is_main() && options_.log_experts_every > 0 && state_.step % options_.log_experts_every == 0) {
      log_.write(experts_record(state_.step, step_loads_, moe_layers_));
    }
    // The run's last step gets an evaluation, also when the time budget ends it early (a signal
    // asks for a quick exit: checkpoint only).
    const bool ends_by_time = out_of_time && !signalled;
    if (evaluate_ && (last || ends_by_time || (options_.eval_every > 0 && state_.step % options_.eval_every == 0))) {
      run_evaluation();
    }
    const bool stop_now = signalled || out_of_time;
    if (last || stop_now || (options_.checkpoint_every > 0 && state_.step % options_.checkpoint_every == 0)) {
      write_checkpoint();
    }
    if (cluster_ != nullptr) cluster_->take_stats();  // evaluation and checkpoints are not a step's
    if (stop_now) {
      result.stopped_by_signal = signalled;
      result.stopped_by_time_budget = !signalled;
      if (is_main()) {
        const std::string which =
            !stop.requested() ? " (on another rank)"
            : stop.signal_number() == dist::kLauncherGoneSignal
                ? " " + std::to_string(stop.signal_number()) + " (the launcher is gone)"
                : " " + std::to_string(stop.signal_number());
        std::cout << (signalled ? "stopped by signal" + which
                                : std::string("time budget reached"))
                  << " at step " << state_.step << " of " << state_.total_steps << std::endl;
      }
      break;
    }
  }
  // Every rank leaves together: rank 0 serves the rendezvous store the others still use.
  if (cluster_ != nullptr) cluster_->world()->barrier();
  result.steps_done = state_.step;
  result.last_checkpoint = last_checkpoint_;
  return result;
}

}  // namespace

TrainResult train(const TrainOptions& options, bool resume, dist::Cluster* cluster) {
  return TrainingRun(options, resume, cluster).run();
}

}  // namespace nextn
