// What a training run reports: one console line per logged step (with a progress bar and ETA)
// and the same figures as JSON lines in <run>/metrics.jsonl for tools.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace nextn {

// total_steps of a --minutes run until its first steps are timed.
constexpr int64_t kCalibratingSteps = 2147483647;

struct StepMetrics {
  int64_t step = 0;  // 1-based: the number of optimizer steps done
  int64_t total_steps = 0;
  double loss = 0, main_loss = 0, main_accuracy = 0;
  std::vector<double> mtp_loss, mtp_accuracy;
  double balance_loss = 0;
  double lr = 0, grad_norm = 0, mtp_lambda = 0, bias_gamma = 0;
  double max_vio_batch = 0;               // mean over MoE layers
  std::vector<double> max_vio_layers;     // per MoE layer
  double tokens_per_second = 0;
  int64_t tokens_seen = 0;
  int64_t skipped_steps = 0;
  bool skipped = false;                   // this step was skipped (non-finite loss or gradient)
  double elapsed_seconds = 0, eta_seconds = 0;
  // Distributed runs (ranks > 1): the step's wall time split into time this rank waited for
  // collectives and the rest, and per collective kind {"calls", "bytes", "seconds"} summed over
  // the process groups (bytes: the payload this rank contributed; all-to-all: rows to other ranks).
  int ranks = 1;
  double step_seconds = 0, comm_seconds = 0;
  nlohmann::json collectives = nlohmann::json::object();
  double all_to_all_bytes_per_token = 0;  // expert dispatch + combine, over the network
};

struct EvalMetrics {
  int64_t step = 0;
  int64_t tokens = 0;
  double main_loss = 0, main_accuracy = 0;
  std::vector<double> mtp_loss;      // mean NLL per counted position of depth k
  std::vector<double> mtp_accuracy;  // top-1 accuracy of depth k: the acceptance a greedy drafter would see
  std::vector<double> max_vio_global;             // per MoE layer, over the whole evaluation set
  std::vector<std::vector<double>> expert_load;   // per MoE layer, fraction of assignments per expert
};

std::string format_step_line(const StepMetrics& m);
std::string format_eval_line(const EvalMetrics& m);
nlohmann::json to_json(const StepMetrics& m);
nlohmann::json to_json(const EvalMetrics& m);
std::string format_duration(double seconds);  // "1h02m", "3m05s", "42s"

// Appends JSON lines to a file, one flushed line per record, its floating-point numbers rounded to
// 7 significant digits.
class JsonLinesLog {
 public:
  JsonLinesLog() = default;
  // Opens `path` for appending. keep_through_step >= 0: first drops every record whose "step" is
  // larger (a resumed run replays those steps) and any torn last line left by a crash.
  void open(const std::string& path, int64_t keep_through_step);
  void write(const nlohmann::json& record);

 private:
  std::ofstream out_;
  std::string path_;
};

}  // namespace nextn
