// Rotary position embeddings (position/rope.hpp): relative-position property, inverse, gradient, norm,
// frequencies, accuracy at large positions.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "kernels/gradcheck.hpp"
#include "position/rope.hpp"

namespace stretch {
namespace {

using test::random_normal;

TEST(RopeInvFreq, MatchesBasePowers) {
  for (int d : {2, 8, 64, 128})
    for (double base : {10000.0, 500000.0}) {
      const auto f = rope_inv_freq(d, base);
      ASSERT_EQ(static_cast<int>(f.size()), d / 2);
      EXPECT_EQ(f[0], 1.0f);
      for (int i = 0; i < d / 2; i++) {
        const double ref = std::exp(-2.0 * i / d * std::log(base));
        EXPECT_NEAR(f[i], ref, 1e-7 * ref) << d << " " << i;
      }
    }
  const auto f = rope_inv_freq(8);
  EXPECT_NEAR(f[1], 0.1, 1e-8);
  EXPECT_NEAR(f[2], 0.01, 1e-9);
  EXPECT_NEAR(f[3], 0.001, 1e-10);
  EXPECT_THROW(rope_inv_freq(7), ConfigError);
  EXPECT_THROW(rope_inv_freq(0), ConfigError);
}

TEST(Rope, KnownRotation) {
  // one head of size 2, inv_freq 1: (1, 0) at position 1 becomes (cos 1, sin 1); k (0, 2) becomes 2 (-sin, cos)
  std::vector<double> qkv = {1.0, 0.0, 0.0, 2.0, 5.0, 6.0};
  const int pos = 1;
  const auto f = rope_inv_freq(2);
  rope_forward(qkv.data(), &pos, f.data(), 1, 1, 2, 1);
  EXPECT_NEAR(qkv[0], std::cos(1.0), 1e-15);
  EXPECT_NEAR(qkv[1], std::sin(1.0), 1e-15);
  EXPECT_NEAR(qkv[2], -2.0 * std::sin(1.0), 1e-15);
  EXPECT_NEAR(qkv[3], 2.0 * std::cos(1.0), 1e-15);
  EXPECT_EQ(qkv[4], 5.0);  // v untouched
  EXPECT_EQ(qkv[5], 6.0);
}

// q of row 0 (position pi) . k of row 1 (position pj), per head, after rotation.
std::vector<double> rotated_scores(const std::vector<double>& q, const std::vector<double>& k, int pi, int pj, int C,
                                   int NH, const std::vector<float>& f) {
  std::vector<double> qkv(2 * 3 * C, 0.0);
  for (int c = 0; c < C; c++) {
    qkv[c] = q[c];
    qkv[3 * C + C + c] = k[c];
  }
  const int pos[2] = {pi, pj};
  rope_forward(qkv.data(), pos, f.data(), 1, 2, C, NH);
  const int hd = C / NH;
  std::vector<double> s(NH, 0.0);
  for (int h = 0; h < NH; h++)
    for (int d = 0; d < hd; d++) s[h] += qkv[h * hd + d] * qkv[3 * C + C + h * hd + d];
  return s;
}

TEST(Rope, ScoresDependOnlyOnPositionDifference) {
  const int C = 16, NH = 2;
  Rng rng(1);
  const auto q = random_normal(rng, C), k = random_normal(rng, C);
  const auto f = rope_inv_freq(C / NH);
  for (auto [pi, pj] : {std::pair{5, 2}, std::pair{40, 0}, std::pair{3, 3}, std::pair{2, 9}}) {
    const auto s0 = rotated_scores(q, k, pi, pj, C, NH, f);
    for (int shift : {1, 17, 1000, 16384}) {
      const auto s1 = rotated_scores(q, k, pi + shift, pj + shift, C, NH, f);
      for (int h = 0; h < NH; h++) EXPECT_NEAR(s0[h], s1[h], 1e-9) << pi << " " << pj << " +" << shift;
    }
  }
  // and the score does change with the difference
  const auto a = rotated_scores(q, k, 5, 2, C, NH, f), b = rotated_scores(q, k, 6, 2, C, NH, f);
  EXPECT_GT(std::fabs(a[0] - b[0]), 1e-6);
}

TEST(Rope, BackwardInvertsForwardAndNormIsPreserved) {
  const int B = 2, T = 9, C = 24, NH = 3, hd = C / NH;
  Rng rng(2);
  auto x = random_normal(rng, static_cast<std::size_t>(B) * T * 3 * C);
  std::vector<int> pos(B * T);
  for (int i = 0; i < B * T; i++) pos[i] = 7 * i + 3;
  const auto f = rope_inv_freq(hd);
  auto y = x;
  rope_forward(y.data(), pos.data(), f.data(), B, T, C, NH);
  for (int n = 0; n < B * T; n++)
    for (int c = 0; c < 3 * C; c += 2) {
      const std::size_t k = static_cast<std::size_t>(n) * 3 * C + c;
      if (c >= 2 * C) {
        EXPECT_EQ(y[k], x[k]);  // v untouched
        EXPECT_EQ(y[k + 1], x[k + 1]);
      } else {
        EXPECT_NEAR(std::hypot(y[k], y[k + 1]), std::hypot(x[k], x[k + 1]), 1e-14);
      }
    }
  rope_backward(y.data(), pos.data(), f.data(), B, T, C, NH);
  for (std::size_t i = 0; i < x.size(); i++) EXPECT_NEAR(y[i], x[i], 1e-14) << i;
  // and the same for float
  auto xf = test::cast_vec<float>(x), yf = xf;
  rope_forward(yf.data(), pos.data(), f.data(), B, T, C, NH);
  rope_backward(yf.data(), pos.data(), f.data(), B, T, C, NH);
  for (std::size_t i = 0; i < xf.size(); i++) EXPECT_NEAR(yf[i], xf[i], 1e-5) << i;
}

TEST(Rope, GradientMatchesFiniteDifferences) {
  const int B = 2, T = 5, C = 12, NH = 3;
  Rng rng(3);
  auto x = random_normal(rng, static_cast<std::size_t>(B) * T * 3 * C);
  auto w = random_normal(rng, x.size());
  std::vector<int> pos = {0, 1, 2, 30, 31, 5, 90, 200, 1000, 1001};
  const auto f = rope_inv_freq(C / NH);
  auto loss = [&] {
    auto y = x;
    rope_forward(y.data(), pos.data(), f.data(), B, T, C, NH);
    return test::weighted_sum(w, y.data());
  };
  auto g = w;
  rope_backward(g.data(), pos.data(), f.data(), B, T, C, NH);
  EXPECT_TRUE(test::gradcheck_ok(loss, {{"qkv", x.data(), g.data(), x.size()}}));
}

TEST(Rope, FloatIsAccurateAtLargePositions) {
  // cos/sin come from a double angle: a float angle at position 16384 would be off by ~1e-3 rad.
  const int B = 1, T = 64, C = 64, NH = 2;
  Rng rng(4);
  auto x = random_normal(rng, static_cast<std::size_t>(B) * T * 3 * C);
  std::vector<int> pos(T);
  for (int t = 0; t < T; t++) pos[t] = 16384 + 37 * t;
  const auto f = rope_inv_freq(C / NH);
  auto xf = test::cast_vec<float>(x);
  rope_forward(x.data(), pos.data(), f.data(), B, T, C, NH);
  rope_forward(xf.data(), pos.data(), f.data(), B, T, C, NH);
  for (std::size_t i = 0; i < x.size(); i++) EXPECT_NEAR(xf[i], x[i], 2e-6 * (1.0 + std::fabs(x[i]))) << i;
  // and an explicit value: position 16384, pair 0 (inv_freq 1)
  std::vector<double> one = {1.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  const int p = 16384;
  rope_forward(one.data(), &p, f.data(), 1, 1, 2, 1);
  EXPECT_NEAR(one[0], std::cos(16384.0), 1e-13);
  EXPECT_NEAR(one[1], std::sin(16384.0), 1e-13);
}

TEST(Rope, InvalidShapesThrow) {
  std::vector<float> x(64);
  int pos[2] = {0, 1};
  const auto f = rope_inv_freq(4);
  EXPECT_THROW(rope_forward(x.data(), pos, f.data(), 1, 1, 6, 2), ConfigError);   // head size 3
  EXPECT_THROW(rope_backward(x.data(), pos, f.data(), 1, 1, 8, 3), ConfigError);  // 8 % 3
}

}  // namespace
}  // namespace stretch
