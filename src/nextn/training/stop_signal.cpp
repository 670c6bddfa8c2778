#include "nextn/training/stop_signal.h"

#include <csignal>

#include "nextn/distributed/local_launcher.h"

namespace nextn {
namespace {

volatile std::sig_atomic_t g_stop_signal = 0;
struct sigaction g_previous_int, g_previous_term, g_previous_launcher_gone;

void on_launcher_gone(int signal) { g_stop_signal = signal; }  // stays installed: repeats are harmless

void on_stop_signal(int signal) {
  g_stop_signal = signal;
  // The next signal of this kind ends the process the usual way.
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  sigaction(signal, &default_action, nullptr);
}

}  // namespace

StopSignal::StopSignal() {
  g_stop_signal = 0;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, &g_previous_int);
  sigaction(SIGTERM, &action, &g_previous_term);
  struct sigaction launcher_gone {};
  launcher_gone.sa_handler = on_launcher_gone;
  sigemptyset(&launcher_gone.sa_mask);
  sigaction(dist::kLauncherGoneSignal, &launcher_gone, &g_previous_launcher_gone);
}

StopSignal::~StopSignal() {
  sigaction(SIGINT, &g_previous_int, nullptr);
  sigaction(SIGTERM, &g_previous_term, nullptr);
  sigaction(dist::kLauncherGoneSignal, &g_previous_launcher_gone, nullptr);
}

bool StopSignal::requested() const { return g_stop_signal != 0; }
int StopSignal::signal_number() const { return static_cast<int>(g_stop_signal); }

}  // namespace nextn
