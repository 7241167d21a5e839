// bfloat16 storage for mixed-precision training (kernels/matmul.hpp's *_bf16 products): the upper 16 bits of an
// IEEE float, converted with round-to-nearest-even (NaN stays NaN, quieted). Values are only stored in bf16; all
// arithmetic and accumulation stays fp32.
//
//   to_bf16(dst, src, n)    dst[i] = bf16(src[i]), OpenMP-parallel for large n; AVX-512 BF16's vcvtne2ps2bf16
//                           when the target has it, else the scalar rounding (both round to nearest even, so
//                           the results are identical: tested)
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace stretch {

using bf16_t = std::uint16_t;

// The reference conversion, as vcvtne2ps2bf16 does it: round to nearest even; NaN -> quiet NaN of the same sign;
// denormal inputs count as zero of their sign (bf16 keeps fp32's exponent range, so only |x| < 2^-126 flushes).
inline bf16_t float_to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<bf16_t>((u >> 16) | 0x0040u);  // NaN
  if ((u & 0x7f800000u) == 0) return static_cast<bf16_t>((u >> 16) & 0x8000u);            // zero, denormal
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<bf16_t>(u >> 16);
}

inline float bf16_to_float(bf16_t h) {
  const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

void to_bf16(bf16_t* dst, const float* src, std::size_t n);

}  // namespace stretch
