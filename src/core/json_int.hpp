// Integers from JSON without wrapping. nlohmann's get<int>() narrows silently (4294967328 reads as 32, 2^40 as
// 0) and get<int64_t>() turns unsigned values above INT64_MAX negative (2^64-1 reads as -1), so a range check
// done after either can pass a value the file never held. These read 64 bits, check, then narrow.
#pragma once
#include <cstdint>
#include <limits>
#include <optional>

namespace stretch {

// The integer a JSON value holds, or nullopt when it is not an integer or lies outside int64's range.
template <class Json>
std::optional<std::int64_t> json_int64(const Json& v) {
  if (!v.is_number_integer()) return std::nullopt;
  if (v.is_number_unsigned()) {
    const auto u = v.template get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
    return static_cast<std::int64_t>(u);
  }
  return v.template get<std::int64_t>();
}

// The integer a JSON value holds when it lies in [lo, hi], else nullopt.
template <class Json>
std::optional<int> json_int_in(const Json& v, std::int64_t lo = std::numeric_limits<int>::min(),
                               std::int64_t hi = std::numeric_limits<int>::max()) {
  const auto x = json_int64(v);
  if (!x || *x < lo || *x > hi) return std::nullopt;
  return static_cast<int>(*x);
}

}  // namespace stretch
