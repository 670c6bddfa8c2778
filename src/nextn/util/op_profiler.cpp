#include "nextn/util/op_profiler.h"

#include <ATen/record_function.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <sstream>
#include <vector>

#include "nextn/util/error.h"

namespace nextn {
namespace {

using Clock = std::chrono::steady_clock;

std::mutex& stats_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, OpStats>& stats() {
  static std::map<std::string, OpStats> s;
  return s;
}
bool& active() {
  static bool a = false;
  return a;
}
thread_local int nesting = 0;

struct StartTime : at::ObserverContext {
  Clock::time_point start;
};

std::unique_ptr<at::ObserverContext> on_enter(const at::RecordFunction&) {
  if (nesting++ > 0) return nullptr;
  auto context = std::make_unique<StartTime>();
  context->start = Clock::now();
  return context;
}

void on_exit(const at::RecordFunction& fn, at::ObserverContext* context) {
  --nesting;
  if (context == nullptr) return;
  const double seconds =
      std::chrono::duration<double>(Clock::now() - static_cast<StartTime*>(context)->start).count();
  std::lock_guard<std::mutex> lock(stats_mutex());
  OpStats& s = stats()[fn.name()];
  s.calls += 1;
  s.seconds += seconds;
}

// Backward nodes as "backward: MmBackward0", a custom Function's by its class name alone, so that
// the columns stay aligned ("autograd::engine::evaluate_function: torch::autograd::CppNode<...>").
std::string display_name(std::string name) {
  const std::string node = "autograd::engine::evaluate_function: ";
  if (name.rfind(node, 0) != 0) return name;
  name = name.substr(node.size());
  const std::string cpp = "torch::autograd::CppNode<";
  if (name.rfind(cpp, 0) == 0 && name.back() == '>') {
    name = name.substr(cpp.size(), name.size() - cpp.size() - 1);
    const auto colon = name.rfind("::");
    if (colon != std::string::npos) name = name.substr(colon + 2);
  }
  return "backward: " + name;
}

}  // namespace

OpProfiler::OpProfiler() {
  NEXTN_CHECK(!active(), "only one OpProfiler may run at a time");
  active() = true;
  stats().clear();
  handle_ = at::addGlobalCallback(
      at::RecordFunctionCallback(&on_enter, &on_exit).scopes({at::RecordScope::FUNCTION}));
}

OpProfiler::~OpProfiler() {
  at::removeCallback(handle_);
  active() = false;
}

std::map<std::string, OpStats> OpProfiler::snapshot() const {
  std::lock_guard<std::mutex> lock(stats_mutex());
  return stats();
}

std::string OpProfiler::report(int top, double per, const std::string& per_label) const {
  auto all = snapshot();
  std::vector<std::pair<std::string, OpStats>> rows(all.begin(), all.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  OpStats total;
  for (const auto& [name, s] : rows) {
    total.calls += s.calls;
    total.seconds += s.seconds;
  }
  std::ostringstream out;
  char line[200];
  std::snprintf(line, sizeof(line), "%-36s %14s %14s\n", "operator", ("calls/" + per_label).c_str(),
                ("us/" + per_label).c_str());
  out << line;
  for (size_t i = 0; i < rows.size() && static_cast<int>(i) < top; ++i) {
    std::snprintf(line, sizeof(line), "%-36s %14.1f %14.1f\n", display_name(rows[i].first).c_str(),
                  rows[i].second.calls / per, 1e6 * rows[i].second.seconds / per);
    out << line;
  }
  std::snprintf(line, sizeof(line), "%-36s %14.1f %14.1f\n", "all operators", total.calls / per, 1e6 * total.seconds / per);
  out << line;
  return out.str();
}

}  // namespace nextn
