// A per-op wall-clock profile, off unless STRETCH_PROFILE=1. Sections are named ("fwd.matmul.qkv"); the
// report lists total milliseconds and calls per name. Costs one branch per section when off.
#pragma once
#include <chrono>
#include <map>
#include <string>

namespace stretch {

class Profile {
 public:
  static Profile& get();
  bool enabled() const { return enabled_; }
  void add(const char* name, double ms) {
    auto& e = table_[name];
    e.first += ms;
    e.second += 1;
  }
  std::string report() const;
  void reset() { table_.clear(); }

 private:
  Profile();
  bool enabled_ = false;
  std::map<std::string, std::pair<double, long>> table_;
};

// RAII timer for one section.
class ProfileScope {
 public:
  explicit ProfileScope(const char* name) : name_(Profile::get().enabled() ? name : nullptr) {
    if (name_) t0_ = std::chrono::steady_clock::now();
  }
  ~ProfileScope() {
    if (name_)
      Profile::get().add(name_, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count());
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  const char* name_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace stretch
