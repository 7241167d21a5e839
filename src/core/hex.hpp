// Lower-case hexadecimal of a byte range (hash digests in file names and identities).
#pragma once
#include <cstddef>
#include <string>

namespace stretch {

inline std::string to_hex(const void* p, std::size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(digits[b[i] >> 4]);
    out.push_back(digits[b[i] & 15]);
  }
  return out;
}

}  // namespace stretch
