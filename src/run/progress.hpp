// Progress reporting: one live line (rewritten with '\r') when stdout is a terminal, plain log lines otherwise.
#pragma once
#include <string>

namespace stretch {

class Progress {
 public:
  explicit Progress(bool quiet);
  bool live() const { return live_; }
  // `milestone`: print a plain line (non-terminal) / keep the line (terminal)
  void step(long step, long steps, double loss, double lr, double tokens_per_s, double elapsed_s, double eta_s,
            bool milestone);
  void note(const std::string& msg);  // a message on its own line
  ~Progress();

 private:
  bool quiet_;
  bool live_;
  bool dirty_ = false;
};

std::string format_duration(double seconds);  // h:mm:ss

}  // namespace stretch
