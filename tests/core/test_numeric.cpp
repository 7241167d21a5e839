// core/numeric.hpp against independent references: the formats' defining formulas evaluated with std::ldexp (every
// one of the 65,536 f16 and bf16 bit patterns), round-to-nearest-even computed in double with std::nearbyint (a
// strided scan over all 2^32 float bit patterns), every midpoint between neighbouring f16 / bf16 values (ties go
// to the even one, the floats beside a tie to the nearer one), and, where the CPU has F16C, the hardware's own
// conversion (vcvtps2ph) over the same scan.
#include <gtest/gtest.h>

#include <bit>
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#ifdef __F16C__
#include <immintrin.h>
#endif

#include "core/numeric.hpp"

namespace stretch {
namespace {

float from_bits(std::uint32_t u) { return std::bit_cast<float>(u); }
std::uint32_t bits(float f) { return std::bit_cast<std::uint32_t>(f); }

// (-1)^s * (e == 0 ? m * 2^(1 - bias - mbits) : (2^mbits + m) * 2^(e - bias - mbits)), inf / NaN at the top exponent.
double decode(std::uint32_t h, int ebits, int mbits) {
  const int bias = (1 << (ebits - 1)) - 1;
  const std::uint32_t s = h >> (ebits + mbits), e = (h >> mbits) & ((1u << ebits) - 1), m = h & ((1u << mbits) - 1);
  double v;
  if (e == (1u << ebits) - 1)
    v = m == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  else if (e == 0)
    v = std::ldexp(static_cast<double>(m), 1 - bias - mbits);
  else
    v = std::ldexp(static_cast<double>((1u << mbits) + m), static_cast<int>(e) - bias - mbits);
  return s ? -v : v;
}

// Round-to-nearest-even encoding of a finite, non-NaN float into a format with `ebits` / `mbits`, in double
// arithmetic: the significand scaled to an integer and rounded by std::nearbyint (the default rounding mode is to
// nearest, ties to even). `flush_below_min_float` applies bf16's rule (fp32 subnormals -> zero).
std::uint32_t encode(float f, int ebits, int mbits, bool flush_below_min_float) {
  const int bias = (1 << (ebits - 1)) - 1;
  const std::uint32_t sign = std::signbit(f) ? 1u << (ebits + mbits) : 0u;
  const std::uint32_t inf = ((1u << ebits) - 1) << mbits;
  const double a = std::fabs(static_cast<double>(f));
  if (std::isinf(a)) return sign | inf;
  if (flush_below_min_float && a < std::ldexp(1.0, -126)) return sign;
  const int emin = 1 - bias;  // the smallest normal exponent
  if (a < std::ldexp(1.0, emin)) {  // subnormal range: multiples of 2^(emin - mbits)
    const double q = std::nearbyint(std::ldexp(a, mbits - emin));
    return sign | static_cast<std::uint32_t>(q);  // q = 2^mbits is the smallest normal: the same encoding
  }
  int ex = 0;
  (void)std::frexp(a, &ex);
  int E = ex - 1;  // a in [2^E, 2^(E+1))
  double q = std::nearbyint(std::ldexp(a, mbits - E));
  if (q == std::ldexp(1.0, mbits + 1)) {
    q /= 2;
    ++E;
  }
  if (E > bias) return sign | inf;  // overflow
  return sign | (static_cast<std::uint32_t>(E + bias) << mbits) | (static_cast<std::uint32_t>(q) - (1u << mbits));
}

TEST(Numeric, EveryHalfDecodesByTheFormula) {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = half_to_float(static_cast<f16_t>(h));
    const double want = decode(h, 5, 10);
    if (std::isnan(want)) {
      // NaN keeps its sign and payload
      ASSERT_EQ(bits(f), ((h & 0x8000u) << 16) | 0x7f800000u | ((h & 0x3ffu) << 13)) << h;
    } else {
      ASSERT_EQ(static_cast<double>(f), want) << h;
      ASSERT_EQ(std::signbit(f), (h & 0x8000u) != 0) << h;
    }
  }
}

TEST(Numeric, EveryBfloatDecodesByTheFormula) {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = bf16_to_float(static_cast<bf16_t>(h));
    const double want = decode(h, 8, 7);
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(f)) << h;
      ASSERT_EQ(bits(f), h << 16) << h;
    } else {
      ASSERT_EQ(static_cast<double>(f), want) << h;
      ASSERT_EQ(std::signbit(f), (h & 0x8000u) != 0) << h;
    }
  }
}

TEST(Numeric, EveryHalfRoundTripsAndEveryBfloatButSubnormals) {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const bool nan_half = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0;
    if (!nan_half) {
      ASSERT_EQ(float_to_half(half_to_float(static_cast<f16_t>(h))), h) << h;
    }
    const bool nan_bf = (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0;
    const bool sub_bf = (h & 0x7f80u) == 0 && (h & 0x7fu) != 0;  // an fp32 subnormal: flushes to signed zero
    if (sub_bf) {
      ASSERT_EQ(float_to_bf16(bf16_to_float(static_cast<bf16_t>(h))), h & 0x8000u) << h;
    } else if (!nan_bf) {
      ASSERT_EQ(float_to_bf16(bf16_to_float(static_cast<bf16_t>(h))), h) << h;
    }
  }
}

// For every pair of neighbouring finite values a < b of the format (and the largest finite one with 2^(emax+1),
// where inf begins), the exact midpoint rounds to whichever has the even encoding, and the floats just below and
// just above it round to a and b. Both signs.
template <class Conv, class Decode>
void check_midpoints(std::uint32_t first, std::uint32_t last_finite, std::uint32_t sign_bit, Conv conv, Decode dec) {
  for (std::uint32_t h = first; h <= last_finite; ++h) {
    const double a = dec(h);
    const double b = h == last_finite ? 2 * a - dec(h - 1) : dec(h + 1);  // past the largest: one more step
    const float mid = static_cast<float>((a + b) / 2);
    ASSERT_EQ(static_cast<double>(mid), (a + b) / 2) << "midpoint not exact: " << h;
    const std::uint32_t even = (h & 1u) ? h + 1 : h;
    for (const std::uint32_t s : {0u, sign_bit}) {
      const float m = s ? -mid : mid;
      ASSERT_EQ(conv(m), s | even) << std::hex << "tie above 0x" << h;
      ASSERT_EQ(conv(std::nextafter(m, 0.0f)), s | h) << std::hex << "below the tie above 0x" << h;
      ASSERT_EQ(conv(std::nextafter(m, s ? -INFINITY : INFINITY)), s | (h + 1)) << std::hex << "above 0x" << h;
    }
  }
}

TEST(Numeric, HalfTiesGoToEvenEverywhere) {
  // 0x0000 .. 0x7bff: subnormals, normals, and 65504 -> 65536 (= inf, encoding 0x7c00)
  check_midpoints(0x0000, 0x7bff, 0x8000, float_to_half, [](std::uint32_t h) { return decode(h, 5, 10); });
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);                       // the first float that rounds to inf
  EXPECT_EQ(float_to_half(std::nextafter(65520.0f, 0.0f)), 0x7bff);
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000);           // half the smallest subnormal: tie to 0
  EXPECT_EQ(float_to_half(std::ldexp(3.0f, -25)), 0x0002);           // tie between 1 and 2 subnormal units
  EXPECT_EQ(float_to_half(std::ldexp(1023.5f, -24)), 0x0400);        // subnormal rounding up into the normals
  EXPECT_EQ(float_to_half(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(float_to_half(-std::numeric_limits<float>::denorm_min()), 0x8000);
}

TEST(Numeric, BfloatTiesGoToEvenEverywhere) {
  // 0x0080 (the smallest normal) .. 0x7f7f (the largest finite, whose upper neighbour 2^128 is inf: 0x7f80)
  check_midpoints(0x0080, 0x7f7f, 0x8000, float_to_bf16, [](std::uint32_t h) { return decode(h, 8, 7); });
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds to inf
}

TEST(Numeric, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(float_to_half(inf), 0x7c00);
  EXPECT_EQ(float_to_half(-inf), 0xfc00);
  EXPECT_EQ(float_to_half(-0.0f), 0x8000);
  EXPECT_EQ(float_to_half(1e9f), 0x7c00);
  EXPECT_EQ(float_to_bf16(inf), 0x7f80);
  EXPECT_EQ(float_to_bf16(-inf), 0xff80);
  EXPECT_EQ(float_to_bf16(-0.0f), 0x8000);
  // fp32 subnormals flush to zero of their sign in bf16 (vcvtne2ps2bf16's rule)
  EXPECT_EQ(float_to_bf16(from_bits(0x00000001u)), 0x0000);
  EXPECT_EQ(float_to_bf16(from_bits(0x807fffffu)), 0x8000);
  EXPECT_EQ(float_to_bf16(from_bits(0x00800000u)), 0x0080);  // the smallest normal is kept
  // NaN: quiet, sign kept, even when the payload lies only in the bits that are dropped (signalling NaNs)
  for (const std::uint32_t n : {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fa00000u, 0xffffffffu, 0x7f802000u}) {
    const f16_t h = float_to_half(from_bits(n));
    EXPECT_EQ(h & 0x7e00u, 0x7e00u) << std::hex << n;  // exponent all ones + quiet bit
    EXPECT_EQ((h & 0x8000u) != 0, (n >> 31) != 0) << std::hex << n;
    EXPECT_EQ(h & 0x1ffu, (n >> 13) & 0x1ffu) << std::hex << n;  // the payload's top bits below the quiet bit
    const bf16_t b = float_to_bf16(from_bits(n));
    EXPECT_EQ(b & 0x7fc0u, 0x7fc0u) << std::hex << n;
    EXPECT_EQ((b & 0x8000u) != 0, (n >> 31) != 0) << std::hex << n;
    EXPECT_TRUE(std::isnan(half_to_float(h)) && std::isnan(bf16_to_float(b)));
  }
}

// Every float (stride 509 over the 2^32 bit patterns, so every exponent and sign, ~8.4 million values) against the
// double reference, and against F16C's vcvtps2ph where the CPU has it.
TEST(Numeric, StridedScanOfAllFloatsMatchesTheReference) {
  ASSERT_EQ(std::fegetround(), FE_TONEAREST);
  std::size_t checked = 0;
  for (std::uint64_t u = 0; u < (std::uint64_t{1} << 32); u += 509) {
    const float f = from_bits(static_cast<std::uint32_t>(u));
    if (std::isnan(f)) continue;  // SpecialValues
    ASSERT_EQ(float_to_half(f), encode(f, 5, 10, false)) << std::hex << u;
    ASSERT_EQ(float_to_bf16(f), encode(f, 8, 7, true)) << std::hex << u;
#ifdef __F16C__
    ASSERT_EQ(float_to_half(f), _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT)) << std::hex << u;
#endif
    ++checked;
  }
  EXPECT_GT(checked, 8'000'000u);
}

// The array forms read any alignment (here: odd addresses) and agree with the scalar forms on every pattern.
TEST(Numeric, ArrayFormsReadUnalignedBytes) {
  std::vector<unsigned char> bytes(1 + 2 * 0x10000);
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    bytes[1 + 2 * h] = static_cast<unsigned char>(h & 0xff);  // little-endian
    bytes[2 + 2 * h] = static_cast<unsigned char>(h >> 8);
  }
  std::vector<float> half(0x10000), bf(0x10000);
  half_to_float(bytes.data() + 1, half.size(), half.data());
  bf16_to_float(bytes.data() + 1, bf.size(), bf.data());
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    ASSERT_EQ(bits(half[h]), bits(half_to_float(static_cast<f16_t>(h)))) << h;
    ASSERT_EQ(bits(bf[h]), h << 16) << h;
  }
}

#ifdef __F16C__
// F16C's vcvtps2ph agrees on NaNs too (quiet, sign, the payload's top 9 bits).
TEST(Numeric, HalfNaNsMatchF16C) {
  for (std::uint32_t m = 1; m < (1u << 23); m += 97)
    for (const std::uint32_t s : {0u, 0x80000000u}) {
      const float f = from_bits(s | 0x7f800000u | m);
      ASSERT_EQ(float_to_half(f), _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT)) << std::hex << m;
    }
}
#endif

}  // namespace
}  // namespace stretch
