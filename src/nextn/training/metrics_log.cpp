#include "nextn/training/metrics_log.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "nextn/io/atomic_file.h"
#include "nextn/util/error.h"

namespace nextn {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  auto s = static_cast<int64_t>(seconds + 0.5);
  char buffer[32];
  if (s >= 3600) {
    std::snprintf(buffer, sizeof buffer, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s % 3600 / 60));
  } else if (s >= 60) {
    std::snprintf(buffer, sizeof buffer, "%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buffer, sizeof buffer, "%llds", static_cast<long long>(s));
  }
  return buffer;
}

namespace {

std::string progress_bar(int64_t done, int64_t total, int width = 20) {
  double fraction = total > 0 ? std::min(1.0, static_cast<double>(done) / total) : 0.0;
  int filled = static_cast<int>(fraction * width);
  return "[" + std::string(filled, '#') + std::string(width - filled, '.') + "]";
}

}  // namespace

std::string format_step_line(const StepMetrics& m) {
  char buffer[256];
  std::ostringstream line;
  // --minutes: until the first steps are timed the step count is unknown (kCalibratingSteps).
  const bool calibrating = m.total_steps >= kCalibratingSteps;
  if (calibrating) {
    std::snprintf(buffer, sizeof buffer, "step %lld (timing steps for --minutes) | loss %.4f main %.4f",
                  static_cast<long long>(m.step), m.loss, m.main_loss);
  } else {
    std::snprintf(buffer, sizeof buffer, "step %lld/%lld %s %3.0f%% | loss %.4f main %.4f",
                  static_cast<long long>(m.step), static_cast<long long>(m.total_steps),
                  progress_bar(m.step, m.total_steps).c_str(), 100.0 * m.step / std::max<int64_t>(m.total_steps, 1),
                  m.loss, m.main_loss);
  }
  line << buffer;
  for (size_t k = 0; k < m.mtp_loss.size(); ++k) {
    std::snprintf(buffer, sizeof buffer, " mtp%zu %.4f", k + 1, m.mtp_loss[k]);
    line << buffer;
  }
  std::snprintf(buffer, sizeof buffer, " | lr %.2e | gnorm %.3f | maxvio %.3f | %.0f tok/s | ETA %s", m.lr,
                m.grad_norm, m.max_vio_batch, m.tokens_per_second,
                calibrating ? "?" : format_duration(m.eta_seconds).c_str());
  line << buffer;
  if (m.ranks > 1) {
    std::snprintf(buffer, sizeof buffer, " | %d ranks, comm %.0f%%", m.ranks,
                  100.0 * m.comm_seconds / std::max(m.step_seconds, 1e-9));
    line << buffer;
  }
  if (m.skipped) line << " | SKIPPED (non-finite loss or gradient)";
  if (m.skipped_steps > 0) line << " | skipped " << m.skipped_steps;
  return line.str();
}

std::string format_eval_line(const EvalMetrics& m) {
  char buffer[128];
  std::ostringstream line;
  std::snprintf(buffer, sizeof buffer, "eval step %lld | %lld tokens | main loss %.4f acc %.3f",
                static_cast<long long>(m.step), static_cast<long long>(m.tokens), m.main_loss, m.main_accuracy);
  line << buffer;
  for (size_t k = 0; k < m.mtp_loss.size(); ++k) {
    std::snprintf(buffer, sizeof buffer, " | depth %zu loss %.4f acc %.3f", k + 1, m.mtp_loss[k], m.mtp_accuracy[k]);
    line << buffer;
  }
  double worst = 0;
  for (double v : m.max_vio_global) worst = std::max(worst, v);
  double mean = 0;
  for (double v : m.max_vio_global) mean += v / static_cast<double>(m.max_vio_global.size());
  std::snprintf(buffer, sizeof buffer, " | MaxVio_global mean %.3f max %.3f", mean, worst);
  line << buffer;
  return line.str();
}

nlohmann::json to_json(const StepMetrics& m) {
  nlohmann::json j = {{"type", "train"},          {"step", m.step},
          {"total_steps", m.total_steps}, {"loss", m.loss},
          {"main_loss", m.main_loss},   {"main_accuracy", m.main_accuracy},
          {"mtp_loss", m.mtp_loss},     {"mtp_accuracy", m.mtp_accuracy},
          {"balance_loss", m.balance_loss}, {"lr", m.lr},
          {"grad_norm", m.grad_norm},   {"mtp_lambda", m.mtp_lambda},
          {"bias_gamma", m.bias_gamma}, {"max_vio_batch", m.max_vio_batch},
          {"max_vio_layers", m.max_vio_layers}, {"tokens_per_second", m.tokens_per_second},
          {"tokens_seen", m.tokens_seen}, {"skipped", m.skipped},
          {"skipped_steps", m.skipped_steps}, {"elapsed_seconds", m.elapsed_seconds}};
  if (m.ranks > 1) {
    j["ranks"] = m.ranks;
    j["step_seconds"] = m.step_seconds;
    j["comm_seconds"] = m.comm_seconds;
    j["compute_seconds"] = std::max(0.0, m.step_seconds - m.comm_seconds);
    j["collectives"] = m.collectives;
    j["all_to_all_bytes_per_token"] = m.all_to_all_bytes_per_token;
  }
  return j;
}

nlohmann::json to_json(const EvalMetrics& m) {
  return {{"type", "eval"},
          {"step", m.step},
          {"tokens", m.tokens},
          {"main_loss", m.main_loss},
          {"main_accuracy", m.main_accuracy},
          {"mtp_loss", m.mtp_loss},
          {"mtp_accuracy", m.mtp_accuracy},
          {"max_vio_global", m.max_vio_global},
          {"expert_load", m.expert_load}};
}

void JsonLinesLog::open(const std::string& path, int64_t keep_through_step) {
  path_ = path;
  if (keep_through_step >= 0 && io::file_exists(path)) {
    std::istringstream existing(io::read_file(path));
    std::string kept, line;
    while (std::getline(existing, line)) {
      nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (record.is_discarded() || !record.is_object()) continue;  // a line torn by a crash
      const auto step = record.find("step");
      if (step == record.end() || !step->is_number() || step->get<double>() <= static_cast<double>(keep_through_step)) {
        kept += line + "\n";
      }
    }
    io::write_file_atomic(path, kept);
  }
  out_.open(path, std::ios::app);
  NEXTN_CHECK(out_.good(), "cannot open '", path, "' for writing");
}

namespace {

// Every floating-point number of `value` rounded to 7 significant digits: as exact as the float32
// values they come from (losses, norms), and a third smaller files than 17-digit doubles.
void round_floats(nlohmann::json& value) {
  if (value.is_number_float()) {
    const double v = value.get<double>();
    if (std::isfinite(v)) {
      char text[32];
      std::snprintf(text, sizeof text, "%.7g", v);
      value = std::strtod(text, nullptr);
    }
  } else if (value.is_array() || value.is_object()) {
    for (auto& item : value) round_floats(item);
  }
}

}  // namespace

void JsonLinesLog::write(const nlohmann::json& record) {
  nlohmann::json rounded = record;
  round_floats(rounded);
  out_ << rounded.dump() << "\n";
  out_.flush();
  NEXTN_CHECK(out_.good(), "cannot write to '", path_, "'");
}

}  // namespace nextn
