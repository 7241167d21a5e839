// Comma-separated lists of numbers from flags ("0,0.25,0.5", "4,128"): each item a whole finite number in
// std::stod's grammar. UsageError "<flag>: '<item>' is not a number (expected <forms>)" otherwise.
#pragma once
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace stretch {

inline std::vector<double> parse_number_list(const std::string& text, const std::string& flag,
                                             const std::string& forms) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::size_t used = 0;
    double v = 0.0;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || !std::isfinite(v))
      throw UsageError(flag + ": '" + item + "' is not a number (expected " + forms + ")");
    out.push_back(v);
  }
  return out;
}

}  // namespace stretch
