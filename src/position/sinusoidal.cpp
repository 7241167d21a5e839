#include "position/sinusoidal.hpp"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.hpp"

namespace stretch {

// Channel c belongs to pair i = c / 2 with divisor 10000^(2i/C); even channels get the sine, odd channels the
// cosine. For odd C the last channel (c = C - 1, a pair of one) gets the sine of its pair index i = (C - 1) / 2.
// Everything is computed in double and rounded to F once when added.
template <class F>
void sinusoidal_add_forward(F* out, const int* pos, int N, int C) {
  if (N < 0 || C <= 0)
    throw ConfigError("sinusoidal: invalid shape N=" + std::to_string(N) + " C=" + std::to_string(C));
  const int npairs = (C + 1) / 2;
  std::vector<double> div(static_cast<std::size_t>(npairs));
  for (int i = 0; i < npairs; i++) div[static_cast<std::size_t>(i)] = std::pow(10000.0, 2.0 * i / C);
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const double p = static_cast<double>(pos[n]);
    F* o = out + static_cast<std::int64_t>(n) * C;
    for (int c = 0; c < C; c++) {
      const double a = p / div[static_cast<std::size_t>(c / 2)];
      o[c] += static_cast<F>(c % 2 == 0 ? std::sin(a) : std::cos(a));
    }
  }
}

template void sinusoidal_add_forward<float>(float*, const int*, int, int);
template void sinusoidal_add_forward<double>(double*, const int*, int, int);

}  // namespace stretch
