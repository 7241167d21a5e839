// Vectorizable float exp and tanh (branch-free, so `#pragma omp simd` loops compile to AVX-512).
// glibc's expf/tanhf are scalar calls; without -ffast-math (never used here) g++ does not vectorize them.
//
//   exp_fast(x):  n = round-to-nearest(x log2 e); r = x - n ln2 (two-part ln2); e^r by Cephes' degree-6 polynomial;
//                 result = e^r * 2^n. x is clamped to [-87.33, 88.03], so underflow gives ~1.2e-38 instead of
//                 0 and overflow gives ~1.7e38 instead of inf. Relative error < 2e-7 (tests/kernels check).
//   tanh_fast(x): 1 - 2 / (1 + exp_fast(2x)); absolute error < 3e-7.
// The references are std::exp / std::tanh (used by the double instantiations of every kernel).
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

namespace stretch {

inline float exp_fast(float x) {
  // clamp with plain comparisons and round with the 1.5 * 2^23 trick: std::fmin / std::floor do not vectorize
  x = x < -87.3365448f ? -87.3365448f : (x > 88.0296919f ? 88.0296919f : x);
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const std::int32_t e = (static_cast<std::int32_t>(n) + 127) << 23;
  return p * std::bit_cast<float>(e);
}

inline float tanh_fast(float x) { return 1.0f - 2.0f / (1.0f + exp_fast(2.0f * x)); }

// The kernels' element functions: the fast versions for float, the library's for double (the oracle).
inline float kexp(float x) { return exp_fast(x); }
inline double kexp(double x) { return std::exp(x); }
inline float ktanh(float x) { return tanh_fast(x); }
inline double ktanh(double x) { return std::tanh(x); }

}  // namespace stretch
