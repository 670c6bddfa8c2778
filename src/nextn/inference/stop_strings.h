// Stop strings for streamed text: text is handed out as soon as it can no longer turn into a stop
// string; the part that could still be the start of one is held back. When a stop string appears,
// everything before it is handed out and generation should end (the stop string itself is not
// part of the output, as in the HF/OpenAI conventions).
#pragma once

#include <string>
#include <vector>

namespace nextn::inference {

class StopStringFilter {
 public:
  explicit StopStringFilter(std::vector<std::string> stop_strings);

  // Adds generated text; returns what may be shown now. Sets `stopped` when a stop string matched.
  std::string push(const std::string& text, bool& stopped);
  // The held-back text, at the end of generation.
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace nextn::inference
