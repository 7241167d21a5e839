// Measuring memory without timing, for the tests that prove a loader's peak: the kernel's own counters in
// /proc/self/status (VmHWM: the peak resident set; VmRSS; RssFile / RssAnon), and a fresh process to measure in
// (this same test binary re-run on one DISABLED_ test), so a measurement starts from a clean baseline.
#pragma once
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/fs.hpp"

namespace stretch::peak_memory {

// A "<key>: <n> kB" field of /proc/self/status in bytes, or -1 when absent.
inline long long status_bytes(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) != 0) continue;
    std::istringstream ss(line.substr(key.size() + 1));
    long long kb = -1;
    ss >> kb;
    return kb < 0 ? -1 : kb * 1024;
  }
  return -1;
}

// Resets VmHWM to the current VmRSS (writing "5" to /proc/self/clear_refs, Linux >= 4.0); false when refused.
inline bool reset_peak() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

// The baseline a child measures from: the peak is reset to the present, and the present resident set returned.
// Where the kernel refuses the reset, a later VmHWM may still hold an earlier, higher peak: the growth computed
// from this baseline can then only come out larger than the truth, never smaller.
inline long long baseline() {
  reset_peak();
  return status_bytes("VmRSS");
}

// The child's side: whether this process is the child asked to run, and where it writes its figures.
inline const char* child_output() { return std::getenv("STRETCH_PEAK_MEMORY_OUT"); }

// Writes key=value lines for the parent.
inline void write_figures(const std::map<std::string, long long>& figures) {
  std::string s;
  for (const auto& [k, v] : figures) s += k + "=" + std::to_string(v) + "\n";
  write_file_atomic(child_output(), s);
}

// The parent's side: runs test `name` ("Suite.DISABLED_Case") of this binary in a fresh process with the extra
// environment `env`, and returns the figures it wrote (empty when it wrote none; `status` gets the wait status).
inline std::map<std::string, long long> run_child(const std::string& name, const std::string& out_file,
                                                  const std::vector<std::string>& env, int* status) {
  char exe[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return {};
  exe[n] = '\0';
  const std::string filter = "--gtest_filter=" + name;
  const char* argv[] = {exe, filter.c_str(), "--gtest_also_run_disabled_tests", nullptr};
  std::vector<std::string> envs(env);
  envs.push_back("STRETCH_PEAK_MEMORY_OUT=" + out_file);
  for (char** e = environ; *e; ++e) envs.emplace_back(*e);
  std::vector<const char*> envp;
  for (auto& e : envs) envp.push_back(e.c_str());
  envp.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) ::dup2(devnull, 1);
    ::execve(exe, const_cast<char* const*>(argv), const_cast<char* const*>(envp.data()));
    ::_exit(127);
  }
  if (pid < 0) return {};
  ::waitpid(pid, status, 0);
  std::map<std::string, long long> figures;
  std::ifstream in(out_file);
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) figures[line.substr(0, eq)] = std::stoll(line.substr(eq + 1));
  }
  return figures;
}

}  // namespace stretch::peak_memory
