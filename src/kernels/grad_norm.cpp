#include "kernels/grad_norm.hpp"

#include <cstdint>
#include <cstring>

namespace stretch {

double sum_of_squares(const float* x, std::size_t n) {
  double s = 0.0;
  for (std::size_t i = 0; i < n; i++) s += static_cast<double>(x[i]) * x[i];
  return s;
}

void scale(float* x, std::size_t n, float s) {
  for (std::size_t i = 0; i < n; i++) x[i] *= s;
}

std::size_t count_nonfinite(const float* x, std::size_t n) {
  std::size_t bad = 0;
  // one thread scans ~9 GB/s (0.5 ms for the reference config's 4.8M parameters): threads only pay off for
  // slabs of hundreds of MB
#pragma omp parallel for reduction(+ : bad) schedule(static) if (n >= (std::size_t{1} << 26))
  for (std::size_t i = 0; i < n; i++) {
    std::uint32_t bits;
    std::memcpy(&bits, x + i, sizeof bits);
    bad += (bits & 0x7f800000u) == 0x7f800000u;
  }
  return bad;
}

}  // namespace stretch
