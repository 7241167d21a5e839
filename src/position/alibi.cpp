#include "position/alibi.hpp"

#include <cmath>
#include <string>

#include "core/error.hpp"

namespace stretch {

// Computed in double, rounded once to float. With p = 2^floor(log2 n):
//   h < p:  m_h = 2^(-8 (h + 1) / p)                 (the power-of-two sequence for p heads)
//   h >= p: m_h = 2^(-4 (2 (h - p) + 1) / p)         (every other slope of the 2p sequence: get_slopes(2p)[0::2])
// which is ggml's closed form (max_bias 8): m0 = 2^(-8/p), m1 = 2^(-4/p), m0^(h+1) or m1^(2(h-p)+1).
// For a power of two the exponents are integers or simple fractions; 8 heads give exactly 1/2 .. 1/256.
std::vector<float> alibi_slopes(int n_heads) {
  if (n_heads < 1)
    throw ConfigError("alibi: the number of heads must be at least 1 (got " + std::to_string(n_heads) + ")");
  int p = 1;
  while (p <= n_heads / 2) p *= 2;  // largest power of two <= n_heads
  std::vector<float> slopes(static_cast<std::size_t>(n_heads));
  for (int h = 0; h < n_heads; h++) {
    const double e = h < p ? -8.0 * (h + 1) / p : -4.0 * (2.0 * (h - p) + 1.0) / p;
    slopes[static_cast<std::size_t>(h)] = static_cast<float>(std::exp2(e));
  }
  return slopes;
}

}  // namespace stretch
