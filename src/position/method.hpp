// The position methods, by name. One table serves parsing and printing.
//
// Where each enters the model (docs/MODEL.md):
//   none        nothing beyond the causal mask
//   alibi       bias -m_h (pos_i - pos_j) added to the scores (position/alibi.hpp)
//   sinusoidal  fixed PE(pos) added to the token embeddings (position/sinusoidal.hpp)
//   learned     learned table wpe[pos] added to the token embeddings (kernels/embedding.hpp)
//   rope        q and k rotated by pos * theta_i (position/rope.hpp)
//   t5          learned per-head bucketed bias added to the scores (position/t5.hpp)
#pragma once
#include <array>
#include <string>
#include <string_view>
#include <utility>

#include "core/error.hpp"

namespace stretch {

enum class PositionMethod { none, alibi, sinusoidal, learned, rope, t5 };

inline constexpr std::array<std::pair<PositionMethod, std::string_view>, 6> kPositionMethodNames{{
    {PositionMethod::none, "none"},
    {PositionMethod::alibi, "alibi"},
    {PositionMethod::sinusoidal, "sinusoidal"},
    {PositionMethod::learned, "learned"},
    {PositionMethod::rope, "rope"},
    {PositionMethod::t5, "t5"},
}};

inline std::string_view to_string(PositionMethod m) {
  for (auto& [v, n] : kPositionMethodNames)
    if (v == m) return n;
  return "?";
}

inline std::string position_method_choices() {
  std::string s;
  for (auto& [v, n] : kPositionMethodNames) s += (s.empty() ? "" : ", ") + std::string(n);
  return s;
}

// Throws UsageError naming `what` (a flag or a field) when `name` is not a known method.
inline PositionMethod parse_position_method(std::string_view name, std::string_view what) {
  for (auto& [v, n] : kPositionMethodNames)
    if (n == name) return v;
  throw UsageError(std::string(what) + ": unknown position method '" + std::string(name) + "' (expected one of: " +
                   position_method_choices() + ")");
}

}  // namespace stretch
