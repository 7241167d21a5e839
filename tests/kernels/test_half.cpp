// kernels/half.hpp against core/numeric.hpp's scalar rules, bit for bit, over every 16-bit pattern (widening) and
// over floats that exercise rounding, ties, subnormals, overflow and the tail after the vector loop (narrowing).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/numeric.hpp"
#include "core/rng.hpp"
#include "kernels/half.hpp"

namespace stretch {
namespace {

TEST(Half, WideningEvery16BitPatternIsExact) {
  std::vector<std::uint16_t> all(65536 + 5);  // + 5: a tail after the last full vector
  for (std::size_t i = 0; i < all.size(); i++) all[i] = static_cast<std::uint16_t>(i);
  std::vector<float> f(all.size());
  widen_f16(f.data(), all.data(), all.size());
  for (std::size_t i = 0; i < all.size(); i++) {
    const float rf = half_to_float(all[i]);
    if (std::isnan(rf)) {
      ASSERT_TRUE(std::isnan(f[i])) << i;
    } else {
      ASSERT_EQ(std::bit_cast<std::uint32_t>(f[i]), std::bit_cast<std::uint32_t>(rf)) << i;
    }
  }
}

TEST(Half, NarrowingToF16MatchesTheScalarRule) {
  std::vector<float> x;
  Rng rng(7);
  for (int i = 0; i < 100000; i++) x.push_back(static_cast<float>(rng.normal() * std::pow(2.0, i % 40 - 28)));
  for (std::uint32_t h = 0; h < 0x7c00; h += 7) {  // exact halves, and the midpoints between neighbours (ties)
    const float a = half_to_float(static_cast<f16_t>(h)), b = half_to_float(static_cast<f16_t>(h + 1));
    x.push_back(a);
    x.push_back(-(a + b) / 2);
    x.push_back((a + b) / 2);
  }
  for (float v : {65504.0f, 65519.0f, 65520.0f, 1e10f, 5.96e-8f, 2.98e-8f, 2.99e-8f, 1e-30f, 0.0f, -0.0f,
                  std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()})
    x.push_back(v);
  x.push_back(1.0f);  // an odd count: a scalar tail
  std::vector<f16_t> got(x.size());
  to_f16(got.data(), x.data(), x.size());
  for (std::size_t i = 0; i < x.size(); i++) ASSERT_EQ(got[i], float_to_half(x[i])) << x[i];
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> nans(9, nan);
  std::vector<f16_t> hn(9);
  to_f16(hn.data(), nans.data(), 9);
  for (f16_t h : hn) EXPECT_TRUE(std::isnan(half_to_float(h)));
}

}  // namespace
}  // namespace stretch
