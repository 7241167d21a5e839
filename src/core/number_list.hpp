// Comma-separated lists from flags. parse_number_list ("0,0.25,0.5", "4,128"): each item a whole finite number in
// std::stod's grammar; UsageError "<flag>: '<item>' is not a number (expected <forms>)" otherwise.
// split_comma_list ("q,k,v"): the items as they stand, empty ones kept ("q,,v" and "q," have an empty item), so a
// caller that looks names up refuses them.
#pragma once
#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <string_view>
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

inline std::vector<std::string_view> split_comma_list(std::string_view text) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    out.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

}  // namespace stretch
