// The 16-bit float formats, converted to and from fp32 in one place (every reader, writer and kernel uses these).
//
//   IEEE binary16 (f16)   1 sign, 5 exponent (bias 15), 10 mantissa bits
//       exponent 1..30:  (-1)^s * (1 + m / 2^10) * 2^(e - 15)
//       exponent 0:      (-1)^s * m * 2^-24                  (zero and subnormals)
//       exponent 31:     inf (m = 0) or NaN (m != 0)
//   bfloat16 (bf16)       the upper 16 bits of an fp32: 1 sign, 8 exponent (bias 127), 7 mantissa bits
//       exponent 1..254: (-1)^s * (1 + m / 2^7) * 2^(e - 127)
//       exponent 0:      (-1)^s * m * 2^-133                 (zero and subnormals)
//       exponent 255:    inf (m = 0) or NaN (m != 0)
//
//   half_to_float(h)   exact (every f16 is an fp32); a NaN keeps its sign and payload (shifted up by 13 bits).
//   bf16_to_float(h)   exact: the bits shifted up by 16.
//   float_to_half(f)   round to nearest, ties to even; |f| >= 65520 (the midpoint between the largest half 65504
//                      and 2^16) -> inf of f's sign; results below 2^-14 are half subnormals (multiples of 2^-24,
//                      rounded the same way; |f| <= 2^-25 -> signed zero); NaN -> a quiet NaN (bit 9 set) of
//                      f's sign keeping the payload's top 9 bits. Integer arithmetic only: independent of the
//                      floating-point environment.
//   float_to_bf16(f)   round to nearest, ties to even (the largest floats round to inf); NaN -> a quiet NaN (bit 6
//                      set) of f's sign; fp32 subnormals (|f| < 2^-126) -> zero of f's sign, as AVX-512 BF16's
//                      vcvtne2ps2bf16 does (kernels/bf16.hpp's vector path and this scalar path agree bit for bit).
//   half_to_float(src, n, dst), bf16_to_float(src, n, dst)
//                      n values stored at src (any alignment, e.g. inside a mapped file; host byte order, which
//                      is little-endian wherever the file readers run) widened into dst[0, n).
#pragma once
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace stretch {

using bf16_t = std::uint16_t;
using f16_t = std::uint16_t;

inline float half_to_float(f16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  const std::uint32_t man = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: man * 2^-24, exact in fp32 (a normal float once man > 0)
    const float f = static_cast<float>(man) * 0x1p-24f;
    return sign ? -f : f;
  }
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (man << 13));  // inf / NaN
  return std::bit_cast<float>(sign | ((exp + (127 - 15)) << 23) | (man << 13));   // rebias 15 -> 127
}

inline float bf16_to_float(bf16_t h) { return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16); }

inline f16_t float_to_half(float f) {
  std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return static_cast<f16_t>(sign | 0x7e00u | ((x >> 13) & 0x3ffu));  // NaN, quieted
  if (x >= 0x477ff000u) return static_cast<f16_t>(sign | 0x7c00u);  // >= 65520 (and inf) -> inf
  if (x >= 0x38800000u) {                                             // >= 2^-14: a normal half
    // rebias 127 -> 15 (subtract 112 << 23) and round the 13 dropped bits to nearest even; a carry out of the
    // mantissa moves into the exponent, which is the correctly rounded result
    x += 0xc8000000u + 0xfffu + ((x >> 13) & 1u);
    return static_cast<f16_t>(sign | (x >> 13));
  }
  if (x <= 0x33000000u) return sign;  // <= 2^-25: rounds to zero (2^-25 itself is the tie between 0 and 2^-24)
  // a half subnormal: |f| = sig * 2^(e - 150) with a 24-bit significand; in units of 2^-24 that is sig >> shift
  const std::uint32_t e = x >> 23;  // 102 .. 112
  const std::uint32_t sig = (x & 0x7fffffu) | 0x800000u;
  const std::uint32_t shift = 126 - e;  // 14 .. 24
  std::uint32_t q = sig >> shift;
  const std::uint32_t rem = sig & ((1u << shift) - 1), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u))) ++q;  // q = 0x400 is the smallest normal half: still right
  return static_cast<f16_t>(sign | q);
}

inline bf16_t float_to_bf16(float f) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<bf16_t>((u >> 16) | 0x0040u);  // NaN, quieted
  if ((u & 0x7f800000u) == 0) return static_cast<bf16_t>((u >> 16) & 0x8000u);            // zero, subnormal
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even (a carry moves into the exponent; max -> inf)
  return static_cast<bf16_t>(u >> 16);
}

namespace detail {
// dst[i] = one(16-bit value i of src), src at any alignment.
template <class One>
void widen16(const void* src, std::size_t n, float* dst, One one) {
  const auto* p = static_cast<const unsigned char*>(src);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    dst[i] = one(h);
  }
}
}  // namespace detail

inline void half_to_float(const void* src, std::size_t n, float* dst) {
  detail::widen16(src, n, dst, [](f16_t h) { return half_to_float(h); });
}
inline void bf16_to_float(const void* src, std::size_t n, float* dst) {
  detail::widen16(src, n, dst, [](bf16_t h) { return bf16_to_float(h); });
}

}  // namespace stretch
