// SIGINT / SIGTERM during training: the first one asks the trainer to finish its step, write a
// checkpoint and exit 0; a second one gets the default action (immediate exit).
// dist::kLauncherGoneSignal (SIGUSR2, distributed/local_launcher.h), which a rank of nextn's launcher receives when the launcher dies
// (PR_SET_PDEATHSIG), asks the same, however often it comes: the kernel sends it again each time
// the rank passes from one dying thread of the launcher to the next.
#pragma once

namespace nextn {

class StopSignal {
 public:
  StopSignal();   // installs the handlers
  ~StopSignal();  // restores the previous ones
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  bool requested() const;
  int signal_number() const;  // 0 when none arrived
};

}  // namespace nextn
