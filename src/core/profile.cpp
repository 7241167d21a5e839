#include "core/profile.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <algorithm>

namespace stretch {

Profile& Profile::get() {
  static Profile p;
  return p;
}

Profile::Profile() {
  const char* e = std::getenv("STRETCH_PROFILE");
  enabled_ = e && std::strcmp(e, "0") != 0 && *e;
}

std::string Profile::report() const {
  std::vector<std::pair<std::string, std::pair<double, long>>> rows(table_.begin(), table_.end());
  std::sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.second.first > b.second.first; });
  double total = 0;
  for (auto& r : rows) total += r.second.first;
  std::string out = "section                          total ms   calls   share\n";
  char line[160];
  for (auto& [name, v] : rows) {
    std::snprintf(line, sizeof line, "%-30s %10.1f %7ld %6.1f%%\n", name.c_str(), v.first, v.second,
                  100.0 * v.first / std::max(total, 1e-9));
    out += line;
  }
  return out;
}

}  // namespace stretch
