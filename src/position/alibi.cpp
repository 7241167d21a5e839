#include "position/alibi.hpp"

#include <cmath>
#include <string>

#include "core/error.hpp"

namespace stretch {

// ggml's closed form: m0 = 2^(-b/n'), m1 = 2^(-b/(2n')), m0^(h+1) or m1^(2(h-n')+1). For a power of two and b = 8
// the exponents are integers or simple fractions; 8 heads give exactly 1/2 .. 1/256.
std::vector<float> alibi_slopes(int n_heads, double max_bias, double scale) {
  if (n_heads < 1)
    throw ConfigError("alibi: the number of heads must be at least 1 (got " + std::to_string(n_heads) + ")");
  if (!(max_bias > 0.0) || !std::isfinite(max_bias))
    throw ConfigError("alibi: the maximum bias must be a positive number (got " + std::to_string(max_bias) + ")");
  if (!(scale > 0.0) || !std::isfinite(scale))
    throw ConfigError("alibi: the slope scale must be a positive number (got " + std::to_string(scale) + ")");
  int p = 1;
  while (p <= n_heads / 2) p *= 2;  // largest power of two <= n_heads
  std::vector<float> slopes(static_cast<std::size_t>(n_heads));
  for (int h = 0; h < n_heads; h++) {
    const double e = h < p ? -max_bias * (h + 1) / p : -(max_bias / 2.0) * (2.0 * (h - p) + 1.0) / p;
    slopes[static_cast<std::size_t>(h)] = static_cast<float>(scale * std::exp2(e));
  }
  return slopes;
}

}  // namespace stretch
