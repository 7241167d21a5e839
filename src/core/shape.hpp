// A tensor shape as text for messages: {4, 256} -> "[4, 256]".
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace stretch {

inline std::string shape_str(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace stretch
