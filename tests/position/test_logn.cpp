// Log-n attention scaling (position/logn.hpp): the factors, the equivalence "scaled queries + plain attention" =
// "scores of query i multiplied by g(p_i)" against a naive double loop, the gradient through the scaling by finite
// differences, and the mode names.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "kernels/attention.hpp"
#include "kernels/gradcheck.hpp"
#include "position/alibi.hpp"
#include "position/logn.hpp"

namespace stretch {
namespace {

using test::random_normal;

TEST(Logn, Factors) {
  const int L = 512;
  const double lg = std::log(512.0);
  // full: log(max(p + 1, 2)) / log(L)
  EXPECT_DOUBLE_EQ(logn_factor(0, L, LognMode::full), std::log(2.0) / lg);
  EXPECT_DOUBLE_EQ(logn_factor(1, L, LognMode::full), std::log(2.0) / lg);
  EXPECT_DOUBLE_EQ(logn_factor(99, L, LognMode::full), std::log(100.0) / lg);
  EXPECT_DOUBLE_EQ(logn_factor(L - 1, L, LognMode::full), 1.0);
  EXPECT_DOUBLE_EQ(logn_factor(4095, L, LognMode::full), std::log(4096.0) / lg);
  // beyond: 1 inside the trained range, log(p + 1) / log(L) past it
  EXPECT_EQ(logn_factor(0, L, LognMode::beyond), 1.0);
  EXPECT_EQ(logn_factor(L - 1, L, LognMode::beyond), 1.0);
  EXPECT_DOUBLE_EQ(logn_factor(4095, L, LognMode::beyond), 4.0 / 3.0);
  EXPECT_GT(logn_factor(L, L, LognMode::beyond), 1.0);
  // off
  EXPECT_EQ(logn_factor(100000, L, LognMode::off), 1.0);
  EXPECT_EQ(logn_factor(100000, 0, LognMode::off), 1.0);
  // monotone in p, and a negative position counts as 0
  for (LognMode m : {LognMode::full, LognMode::beyond}) {
    EXPECT_EQ(logn_factor(-5, L, m), logn_factor(0, L, m));
    for (int p = 0; p < 3 * L; p++) EXPECT_LE(logn_factor(p, L, m), logn_factor(p + 1, L, m));
  }
  EXPECT_THROW(logn_factor(3, 1, LognMode::full), ConfigError);
  EXPECT_THROW(logn_factor(3, 0, LognMode::beyond), ConfigError);
}

TEST(Logn, ScalesOnlyTheQueryPart) {
  const int B = 2, T = 5, C = 6, stride = 3 * C;
  Rng rng(1);
  const auto x0 = random_normal(rng, static_cast<std::size_t>(B) * T * stride);
  std::vector<int> pos(static_cast<std::size_t>(B) * T);
  for (std::size_t i = 0; i < pos.size(); i++) pos[i] = static_cast<int>(i) * 300;
  for (LognMode m : {LognMode::off, LognMode::full, LognMode::beyond}) {
    auto x = x0;
    auto g = x0;
    logn_scale_queries(x.data(), pos.data(), B * T, stride, C, 256, m);
    logn_scale_query_grads(g.data(), pos.data(), B * T, stride, C, 256, m);
    EXPECT_EQ(x, g);  // the same factor in both directions
    for (int r = 0; r < B * T; r++) {
      const double f = logn_factor(pos[r], 256, m);
      for (int c = 0; c < stride; c++) {
        const std::size_t k = static_cast<std::size_t>(r) * stride + c;
        EXPECT_EQ(x[k], c < C ? x0[k] * f : x0[k]) << "row " << r << " c " << c;
      }
    }
  }
  // float: one rounding of the double factor
  std::vector<float> xf(test::cast_vec<float>(x0));
  logn_scale_queries(xf.data(), pos.data(), B * T, stride, C, 256, LognMode::full);
  for (int c = 0; c < C; c++)
    EXPECT_EQ(xf[static_cast<std::size_t>(3) * stride + c],
              static_cast<float>(x0[static_cast<std::size_t>(3) * stride + c]) *
                  static_cast<float>(logn_factor(pos[3], 256, LognMode::full)));
  std::vector<double> x(4);
  EXPECT_THROW(logn_scale_queries(x.data(), pos.data(), 1, 2, 3, 256, LognMode::full), ConfigError);  // stride < C
  EXPECT_THROW(logn_scale_queries(x.data(), pos.data(), 1, 4, 2, 1, LognMode::full), ConfigError);    // L < 2
  logn_scale_queries(x.data(), pos.data(), 1, 4, 2, 1, LognMode::off);                                // off: no-op
}

struct Shape {
  int B, T, C, NH;
  std::size_t nqkv() const { return static_cast<std::size_t>(B) * T * 3 * C; }
  std::size_t nout() const { return static_cast<std::size_t>(B) * T * C; }
  std::size_t nprobs() const { return static_cast<std::size_t>(B) * NH * T * T; }
  double scale() const { return 1.0 / std::sqrt(static_cast<double>(C / NH)); }
};

// Naive attention with the scores of query i multiplied by g(p_i): s_ij = g(p_i) scale q_i . k_j + bias.
void naive_logn_forward(std::vector<double>& out, const std::vector<double>& qkv, const std::vector<int>& pos,
                        const std::vector<float>& slopes, const Shape& s, int L, LognMode mode) {
  const int hd = s.C / s.NH, T = s.T, C = s.C;
  out.assign(s.nout(), 0.0);
  auto at = [&](int b, int t, int c) { return qkv[(static_cast<std::size_t>(b) * T + t) * 3 * C + c]; };
  for (int b = 0; b < s.B; b++)
    for (int h = 0; h < s.NH; h++)
      for (int i = 0; i < T; i++) {
        const double g = logn_factor(pos[b * T + i], L, mode);
        std::vector<double> sc(static_cast<std::size_t>(i) + 1);
        double mx = -INFINITY;
        for (int j = 0; j <= i; j++) {
          double dt = 0.0;
          for (int d = 0; d < hd; d++) dt += at(b, i, h * hd + d) * at(b, j, C + h * hd + d);
          sc[j] = g * s.scale() * dt - static_cast<double>(slopes[h]) * (pos[b * T + i] - pos[b * T + j]);
          mx = std::max(mx, sc[j]);
        }
        double z = 0.0;
        for (auto& v : sc) z += (v = std::exp(v - mx));
        for (int j = 0; j <= i; j++)
          for (int d = 0; d < hd; d++)
            out[(static_cast<std::size_t>(b) * T + i) * C + h * hd + d] += sc[j] / z * at(b, j, 2 * C + h * hd + d);
      }
}

TEST(Logn, ScaledQueriesEqualScaledScores) {
  const Shape s{2, 23, 12, 3};
  const int L = 8;  // positions run past L, so beyond scales some rows and not others
  Rng rng(2);
  const auto qkv = random_normal(rng, s.nqkv());
  std::vector<int> pos(static_cast<std::size_t>(s.B) * s.T);
  for (int b = 0; b < s.B; b++)
    for (int t = 0; t < s.T; t++) pos[static_cast<std::size_t>(b) * s.T + t] = 2 * t + 3 * b;
  const auto slopes = alibi_slopes(s.NH);
  for (LognMode m : {LognMode::off, LognMode::full, LognMode::beyond}) {
    SCOPED_TRACE(to_string(m));
    auto scaled = qkv;
    logn_scale_queries(scaled.data(), pos.data(), static_cast<long>(s.B) * s.T, 3 * s.C, s.C, L, m);
    std::vector<double> out(s.nout()), probs(s.nprobs()), ref;
    attention_forward(out.data(), probs.data(), scaled.data(), pos.data(), AlibiBias{slopes.data()}, s.B, s.T, s.C,
                      s.NH, s.scale());
    naive_logn_forward(ref, qkv, pos, slopes, s, L, m);
    for (std::size_t i = 0; i < out.size(); i++) ASSERT_NEAR(out[i], ref[i], 1e-12) << i;
  }
}

double precise_weighted_sum(const std::vector<double>& w, const double* out) {
  long double acc = 0.0L;
  for (std::size_t k = 0; k < w.size(); k++) acc += static_cast<long double>(w[k]) * static_cast<long double>(out[k]);
  return static_cast<double>(acc);
}

// L(qkv) = sum w . attention(logn(qkv)); backward: attention_backward, then logn_scale_query_grads.
TEST(Logn, GradientMatchesFiniteDifferences) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const Shape s{2, 9, 12, 3};
  const int L = 4;
  Rng rng(3);
  auto qkv = random_normal(rng, s.nqkv());
  const auto w = random_normal(rng, s.nout());
  std::vector<int> pos(static_cast<std::size_t>(s.B) * s.T);
  for (std::size_t i = 0; i < pos.size(); i++) pos[i] = static_cast<int>(i % static_cast<std::size_t>(s.T)) * 3;
  const long BT = static_cast<long>(s.B) * s.T;
  for (LognMode m : {LognMode::full, LognMode::beyond}) {
    SCOPED_TRACE(to_string(m));
    std::vector<double> scaled(s.nqkv()), out(s.nout()), probs(s.nprobs()), dqkv(s.nqkv(), 0.0);
    NoBias bias;
    auto forward = [&] {
      scaled = qkv;
      logn_scale_queries(scaled.data(), pos.data(), BT, 3 * s.C, s.C, L, m);
      attention_forward(out.data(), probs.data(), scaled.data(), pos.data(), bias, s.B, s.T, s.C, s.NH, s.scale());
      return precise_weighted_sum(w, out.data());
    };
    forward();
    attention_backward(dqkv.data(), w.data(), scaled.data(), probs.data(), pos.data(), bias, s.B, s.T, s.C, s.NH,
                       s.scale());
    logn_scale_query_grads(dqkv.data(), pos.data(), BT, 3 * s.C, s.C, L, m);
    test::GradCheckOptions o;
    o.eps = 1e-5;
    o.floor = 1e-4;
    EXPECT_TRUE(test::gradcheck_ok(forward, {{"qkv", qkv.data(), dqkv.data(), qkv.size()}}, o));
  }
  omp_set_num_threads(saved);
}

TEST(Logn, ModeNames) {
  for (LognMode m : {LognMode::off, LognMode::full, LognMode::beyond})
    EXPECT_EQ(parse_logn_mode(to_string(m), "--logn"), m);
  EXPECT_EQ(to_string(LognMode::beyond), "beyond");
  for (const char* bad : {"", "on", "Full", "log"}) {
    try {
      parse_logn_mode(bad, "--logn-scaling");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const ConfigError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("--logn-scaling"), std::string::npos) << msg;
      EXPECT_NE(msg.find("off, full, beyond"), std::string::npos) << msg;
    }
  }
}

}  // namespace
}  // namespace stretch
