// RUN/metrics.jsonl: one JSON object per line (a step's loss, lr, gradient norm and throughput; an interval
// validation; a skipped step; the final or stopped line). Written by rank 0 only; every line is flushed, and a
// failed write (a full disk) throws IoError naming the file instead of losing the log silently.
#pragma once
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace stretch {

class MetricsLog {
 public:
  // active: this process writes (rank 0); an inactive log ignores every call.
  MetricsLog(std::filesystem::path path, bool active) : path_(std::move(path)), active_(active) {}
  // A new run: the file emptied. A resumed one: only the lines up to its checkpoint's step are kept (it rewrites
  // what came after), dropping lines marked "stopped" (a session's early end) and a torn last line from a crash.
  void start_fresh();
  void keep_up_to(long step);
  // Opens the file for appending (after start_fresh / keep_up_to), then one line per call.
  void open();
  void log(const nlohmann::json& record);

 private:
  std::filesystem::path path_;
  bool active_;
  std::ofstream out_;
};

}  // namespace stretch
