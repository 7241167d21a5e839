// ALiBi slopes (position/alibi.hpp): exact values for powers of two, the reference code's rule for other head
// counts, and ggml's closed form.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.hpp"
#include "position/alibi.hpp"

namespace stretch {
namespace {

TEST(AlibiSlopes, EightHeadsAreExactlyHalfToOne256th) {
  const auto s = alibi_slopes(8);
  ASSERT_EQ(s.size(), 8u);
  for (int h = 0; h < 8; h++) EXPECT_EQ(s[h], 1.0f / static_cast<float>(1 << (h + 1))) << h;
}

TEST(AlibiSlopes, TwelveHeadsFollowTheReferenceRule) {
  const auto s = alibi_slopes(12);
  ASSERT_EQ(s.size(), 12u);
  for (int h = 0; h < 8; h++) EXPECT_EQ(s[h], std::ldexp(1.0f, -(h + 1))) << h;
  const double tail[4] = {std::pow(2.0, -0.5), std::pow(2.0, -1.5), std::pow(2.0, -2.5), std::pow(2.0, -3.5)};
  for (int k = 0; k < 4; k++) EXPECT_EQ(s[8 + k], static_cast<float>(tail[k])) << k;
  EXPECT_NEAR(s[8], 0.7071, 1e-4);
  EXPECT_NEAR(s[11], 0.0884, 1e-4);
}

// fairseq's get_slopes (ofirpress/attention_with_linear_biases), transcribed in double.
std::vector<double> fairseq_slopes(int n) {
  auto pow2 = [](int m) {
    const double start = std::pow(2.0, -std::pow(2.0, -(std::log2(static_cast<double>(m)) - 3.0)));
    std::vector<double> r(static_cast<std::size_t>(m));
    for (int i = 0; i < m; i++) r[i] = start * std::pow(start, i);
    return r;
  };
  if (std::floor(std::log2(n)) == std::log2(n)) return pow2(n);
  const int p = 1 << static_cast<int>(std::floor(std::log2(n)));
  auto r = pow2(p);
  const auto extra = pow2(2 * p);
  for (int i = 0; static_cast<int>(r.size()) < n; i += 2) r.push_back(extra[i]);
  return r;
}

TEST(AlibiSlopes, MatchGgmlClosedFormAndFairseqFor1To32) {
  for (int n = 1; n <= 32; n++) {
    const auto s = alibi_slopes(n);
    ASSERT_EQ(static_cast<int>(s.size()), n);
    int p = 1;
    while (2 * p <= n) p *= 2;
    const double m0 = std::pow(2.0, -8.0 / p), m1 = std::pow(2.0, -4.0 / p);
    const auto fs = fairseq_slopes(n);
    for (int h = 0; h < n; h++) {
      const double g = h < p ? std::pow(m0, h + 1) : std::pow(m1, 2 * (h - p) + 1);
      EXPECT_NEAR(s[h], g, 1e-7 * g) << "n " << n << " h " << h;  // float rounding: half an ulp is 6e-8
      EXPECT_NEAR(s[h], fs[h], 1e-7 * fs[h]) << "n " << n << " h " << h;
      if (h > 0 && h < p) {
        EXPECT_LT(s[h], s[h - 1]);
      }
    }
  }
}

// transformers' build_mpt_alibi_tensor slopes, transcribed in double: N = 2^ceil(log2 n), base = (1..N) * b / N,
// slopes = 1 / 2^base, then concat(slopes[1::2], slopes[::2])[:n] when N != n.
std::vector<double> mpt_slopes(int n, double b) {
  const int N = 1 << static_cast<int>(std::ceil(std::log2(static_cast<double>(n))));
  std::vector<double> s(static_cast<std::size_t>(N));
  for (int k = 0; k < N; k++) s[k] = 1.0 / std::pow(2.0, (k + 1) * (b / N));
  if (N == n) return s;
  std::vector<double> r;
  for (int k = 1; k < N; k += 2) r.push_back(s[k]);
  for (int k = 0; k < N; k += 2) r.push_back(s[k]);
  r.resize(static_cast<std::size_t>(n));
  return r;
}

// The two published forms of the slopes are one sequence (the proof is in position/alibi.hpp): MPT's form, for any
// maximum bias, equals ours for every head count.
TEST(AlibiSlopes, MptFormIsThePaperRuleFor1To64AndOtherMaxBiases) {
  for (double b : {8.0, 16.0, 4.5}) {
    for (int n = 1; n <= 64; n++) {
      const auto s = alibi_slopes(n, b);
      const auto want = mpt_slopes(n, b);
      ASSERT_EQ(static_cast<int>(s.size()), n);
      for (int h = 0; h < n; h++) EXPECT_NEAR(s[h], want[h], 1e-7 * want[h]) << "n " << n << " h " << h << " b " << b;
    }
  }
}

TEST(AlibiSlopes, MaxBiasScalesTheExponents) {
  const auto s = alibi_slopes(8, 16.0);
  for (int h = 0; h < 8; h++) EXPECT_EQ(s[h], std::ldexp(1.0f, -2 * (h + 1))) << h;
  EXPECT_THROW(alibi_slopes(8, 0.0), ConfigError);
  EXPECT_THROW(alibi_slopes(8, -1.0), ConfigError);
  EXPECT_THROW(alibi_slopes(8, std::nan("")), ConfigError);
}

TEST(AlibiSlopes, OneHeadAndInvalidCounts) {
  const auto s = alibi_slopes(1);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0], 1.0f / 256.0f);
  EXPECT_THROW(alibi_slopes(0), ConfigError);
  EXPECT_THROW(alibi_slopes(-3), ConfigError);
}

}  // namespace
}  // namespace stretch
