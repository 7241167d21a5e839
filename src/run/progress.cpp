#include "run/progress.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace stretch {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) seconds = 0;
  long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

Progress::Progress(bool quiet) : quiet_(quiet), live_(!quiet && ::isatty(::fileno(stdout))) {}

Progress::~Progress() {
  if (dirty_) std::fputs("\n", stdout);
}

void Progress::step(long step, long steps, double loss, double lr, double tokens_per_s, double elapsed_s,
                    double eta_s, bool milestone) {
  if (quiet_) return;
  char line[256];
  std::snprintf(line, sizeof line, "step %ld/%ld | loss %.4f | lr %.2e | %.0f tok/s | elapsed %s | ETA %s", step,
                steps, loss, lr, tokens_per_s, format_duration(elapsed_s).c_str(), format_duration(eta_s).c_str());
  if (live_) {
    std::printf("\r\033[K%s", line);
    dirty_ = true;
    std::fflush(stdout);
  } else if (milestone) {
    std::printf("%s\n", line);
    std::fflush(stdout);
  }
}

void Progress::note(const std::string& msg) {
  if (quiet_) return;
  if (dirty_) {
    std::fputs("\n", stdout);
    dirty_ = false;
  }
  std::printf("%s\n", msg.c_str());
  std::fflush(stdout);
}

}  // namespace stretch
