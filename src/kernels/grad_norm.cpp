#include "kernels/grad_norm.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace stretch {

namespace {

constexpr std::size_t kSquaresBlock = std::size_t{1} << 15;  // values per block
constexpr int kLanes = 8;                                    // accumulators per block

// One block: value i goes to accumulator i mod 8, each in index order; then ((a0 + a1) + (a2 + a3)) + ... pairwise.
double block_sum_of_squares(const float* x, std::size_t n) {
  double acc[kLanes] = {};
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; j++) acc[j] += static_cast<double>(x[i + j]) * x[i + j];
  for (int j = 0; i < n; i++, j++) acc[j] += static_cast<double>(x[i]) * x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

}  // namespace

double sum_of_squares(const float* x, std::size_t n) {
  const std::size_t blocks = (n + kSquaresBlock - 1) / kSquaresBlock;
  if (blocks <= 1) return block_sum_of_squares(x, n);
  std::vector<double> part(blocks);
  // threads only for slabs of a few MB (one thread sums ~1 GB/s of floats this way)
#pragma omp parallel for schedule(static) if (blocks >= 16)
  for (std::size_t b = 0; b < blocks; b++) {
    const std::size_t i0 = b * kSquaresBlock;
    part[b] = block_sum_of_squares(x + i0, std::min(kSquaresBlock, n - i0));
  }
  double s = 0.0;
  for (double p : part) s += p;
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
