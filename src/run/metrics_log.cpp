#include "run/metrics_log.hpp"

#include <cerrno>
#include <cstring>
#include <string>

#include "core/error.hpp"
#include "core/fs.hpp"

namespace stretch {
using json = nlohmann::json;

void MetricsLog::start_fresh() {
  if (active_) write_file_atomic(path_, "");
}

void MetricsLog::keep_up_to(long step) {
  if (!active_) return;
  std::ifstream in(path_);
  if (!in) return;
  std::string line, kept;
  while (std::getline(in, line)) {
    try {
      auto j = json::parse(line);
      // a session stopped early (--stop-after, a signal) logged a line marked "stopped": not part of the curve
      if (j.value("step", 0L) <= step && !j.value("stopped", false)) kept += line + "\n";
    } catch (const json::exception&) {
      // a torn last line from a crash: drop it
    }
  }
  write_file_atomic(path_, kept);
}

void MetricsLog::open() {
  if (!active_) return;
  out_.open(path_, std::ios::app);
  if (!out_) throw IoError(path_.string() + ": cannot open for appending");
}

void MetricsLog::log(const json& record) {
  if (!active_) return;
  errno = 0;
  out_ << record.dump() << "\n" << std::flush;
  if (!out_)
    throw IoError(path_.string() + ": write failed" +
                  (errno != 0 ? std::string(": ") + std::strerror(errno) : std::string()));
}

}  // namespace stretch
