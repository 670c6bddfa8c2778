// SIGINT / SIGTERM during training: the first one asks the trainer to finish its step, write a
// checkpoint and exit 0; a second one gets the default action (immediate exit).
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
