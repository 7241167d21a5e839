// The plain attention kernel (kernels/attention_impl.hpp) with the position biases of position/: finite-difference
// gradients in double, agreement with a naive reference and between float and double, causality, thread-count
// independence, and ALiBi's dependence on position differences only.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "kernels/attention.hpp"
#include "kernels/gradcheck.hpp"
#include "position/alibi.hpp"
#include "position/t5.hpp"

namespace stretch {
namespace {

using test::random_normal;

std::vector<int> default_pos(int B, int T, int offset = 0) {
  std::vector<int> p(static_cast<std::size_t>(B) * T);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) p[static_cast<std::size_t>(b) * T + t] = t + offset;
  return p;
}

// Per sequence, T distinct sorted positions drawn from [0, hi).
std::vector<int> random_sorted_pos(Rng& rng, int B, int T, int hi) {
  std::vector<int> p;
  for (int b = 0; b < B; b++) {
    std::set<int> s;
    while (static_cast<int>(s.size()) < T) s.insert(static_cast<int>(rng.below(static_cast<std::uint64_t>(hi))));
    p.insert(p.end(), s.begin(), s.end());
  }
  return p;
}

// Independent, straightforward double reference of the forward pass. bias(h, pi, pj) -> double.
template <class BiasFn>
void naive_forward(std::vector<double>& out, std::vector<double>& probs, const std::vector<double>& qkv,
                   const std::vector<int>& pos, BiasFn bias, int B, int T, int C, int NH, double scale) {
  const int hd = C / NH;
  out.assign(static_cast<std::size_t>(B) * T * C, 0.0);
  probs.assign(static_cast<std::size_t>(B) * NH * T * T, 0.0);
  auto q = [&](int b, int t, int h, int d) { return qkv[(static_cast<std::size_t>(b) * T + t) * 3 * C + h * hd + d]; };
  auto k = [&](int b, int t, int h, int d) { return q(b, t, h, d + C); };
  auto v = [&](int b, int t, int h, int d) { return q(b, t, h, d + 2 * C); };
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int i = 0; i < T; i++) {
        std::vector<double> s(static_cast<std::size_t>(i) + 1);
        double mx = -INFINITY;
        for (int j = 0; j <= i; j++) {
          double dt = 0.0;
          for (int d = 0; d < hd; d++) dt += q(b, i, h, d) * k(b, j, h, d);
          s[j] = scale * dt + bias(h, pos[b * T + i], pos[b * T + j]);
          mx = std::max(mx, s[j]);
        }
        double z = 0.0;
        for (auto& x : s) z += (x = std::exp(x - mx));
        for (int j = 0; j <= i; j++) {
          const double p = s[j] / z;
          probs[((static_cast<std::size_t>(b) * NH + h) * T + i) * T + j] = p;
          for (int d = 0; d < hd; d++) out[(static_cast<std::size_t>(b) * T + i) * C + h * hd + d] += p * v(b, j, h, d);
        }
      }
}

// sum_k w_k out_k accumulated in long double: the rounding of a plain double sum over thousands of outputs would
// add ~1e-13 of noise to L, i.e. ~1e-7 to a central difference with eps 1e-6, larger than the smallest gradients.
double precise_weighted_sum(const std::vector<double>& w, const double* out) {
  long double s = 0.0L;
  for (std::size_t k = 0; k < w.size(); k++) s += static_cast<long double>(w[k]) * static_cast<long double>(out[k]);
  return static_cast<double>(s);
}

// eps 1e-5 and a floor of 1e-4: the rounding of the outputs alone gives central differences an absolute noise of
// ~1e-9 at eps 1e-6, which is a 1e-4 relative error on the smallest gradients (~1e-5, keys with tiny
// probabilities). With these settings the test still demands |analytic - numeric| < 1e-9 for small gradients and
// a relative error under 1e-5 for the others; a wrong formula is off by 1e-2 or more.
test::GradCheckOptions fd_options() {
  test::GradCheckOptions o;
  o.eps = 1e-5;
  o.floor = 1e-4;
  return o;
}

// Runs the finite-difference checks on one thread: thousands of tiny forward passes, where an OpenMP team on a
// busy machine costs far more than the work (the kernel's thread-count independence is tested separately).
struct OneThread {
  int saved = omp_get_max_threads();
  OneThread() { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(saved); }
};

struct Shape {
  int B, T, C, NH;
  std::size_t nqkv() const { return static_cast<std::size_t>(B) * T * 3 * C; }
  std::size_t nout() const { return static_cast<std::size_t>(B) * T * C; }
  std::size_t nprobs() const { return static_cast<std::size_t>(B) * NH * T * T; }
  double scale() const { return 1.0 / std::sqrt(static_cast<double>(C / NH)); }
};

// ---------------------------------------------------------------------------------------------------------------
// Finite differences (double)

void gradcheck_nobias(const Shape& s, const std::vector<int>& pos, std::uint64_t seed) {
  OneThread one;
  Rng rng(seed);
  auto qkv = random_normal(rng, s.nqkv());
  auto w = random_normal(rng, s.nout());
  std::vector<double> out(s.nout()), probs(s.nprobs()), dqkv(s.nqkv(), 0.0);
  NoBias bias;
  auto loss = [&] {
    attention_forward(out.data(), probs.data(), qkv.data(), pos.data(), bias, s.B, s.T, s.C, s.NH, s.scale());
    return precise_weighted_sum(w, out.data());
  };
  loss();
  attention_backward(dqkv.data(), w.data(), qkv.data(), probs.data(), pos.data(), bias, s.B, s.T, s.C, s.NH,
                     s.scale());
  EXPECT_TRUE(test::gradcheck_ok(loss, {{"qkv", qkv.data(), dqkv.data(), qkv.size()}}, fd_options()));
}

void gradcheck_alibi(const Shape& s, const std::vector<int>& pos, std::uint64_t seed) {
  OneThread one;
  Rng rng(seed);
  auto qkv = random_normal(rng, s.nqkv());
  auto w = random_normal(rng, s.nout());
  std::vector<double> out(s.nout()), probs(s.nprobs()), dqkv(s.nqkv(), 0.0);
  const auto slopes = alibi_slopes(s.NH);
  AlibiBias bias{slopes.data()};
  auto loss = [&] {
    attention_forward(out.data(), probs.data(), qkv.data(), pos.data(), bias, s.B, s.T, s.C, s.NH, s.scale());
    return precise_weighted_sum(w, out.data());
  };
  loss();
  attention_backward(dqkv.data(), w.data(), qkv.data(), probs.data(), pos.data(), bias, s.B, s.T, s.C, s.NH,
                     s.scale());
  EXPECT_TRUE(test::gradcheck_ok(loss, {{"qkv", qkv.data(), dqkv.data(), qkv.size()}}, fd_options()));
}

void gradcheck_t5(const Shape& s, const std::vector<int>& pos, std::uint64_t seed) {
  OneThread one;
  Rng rng(seed);
  auto qkv = random_normal(rng, s.nqkv());
  auto w = random_normal(rng, s.nout());
  auto table = random_normal(rng, static_cast<std::size_t>(kT5Buckets) * s.NH);
  std::vector<double> out(s.nout()), probs(s.nprobs()), dqkv(s.nqkv(), 0.0);
  std::vector<double> partial(static_cast<std::size_t>(s.B) * s.NH * kT5Buckets, 0.0);
  std::vector<double> dtable(table.size(), 0.0);
  T5Bias<double> bias{table.data(), partial.data(), s.NH};
  auto loss = [&] {
    attention_forward(out.data(), probs.data(), qkv.data(), pos.data(), bias, s.B, s.T, s.C, s.NH, s.scale());
    return precise_weighted_sum(w, out.data());
  };
  loss();
  attention_backward(dqkv.data(), w.data(), qkv.data(), probs.data(), pos.data(), bias, s.B, s.T, s.C, s.NH,
                     s.scale());
  t5_reduce_grad(dtable.data(), partial.data(), s.B, s.NH);
  EXPECT_TRUE(test::gradcheck_ok(loss, {{"qkv", qkv.data(), dqkv.data(), qkv.size()},
                                        {"t5_bias", table.data(), dtable.data(), table.size()}},
                                 fd_options()));
  // Buckets no distance reaches have exactly zero gradient.
  std::set<int> used;
  for (int b = 0; b < s.B; b++)
    for (int i = 0; i < s.T; i++)
      for (int j = 0; j <= i; j++) used.insert(t5_bucket(pos[b * s.T + i] - pos[b * s.T + j]));
  for (int k = 0; k < kT5Buckets; k++)
    if (!used.count(k)) {
      for (int h = 0; h < s.NH; h++) EXPECT_EQ(dtable[k * s.NH + h], 0.0) << "bucket " << k;
    }
}

const Shape kSmall{2, 7, 12, 3};
const Shape kLong{2, 37, 12, 3};

TEST(AttentionGrad, NoBiasDefaultPositions) {
  gradcheck_nobias(kSmall, default_pos(2, 7), 1);
  gradcheck_nobias(kLong, default_pos(2, 37), 2);
}

TEST(AttentionGrad, NoBiasWideHeads) {  // hd = 40: exercises the vectorized part of the dot products
  const Shape s{1, 9, 80, 2};
  gradcheck_nobias(s, default_pos(1, 9), 3);
}

TEST(AttentionGrad, AlibiShiftedAndRandomPositions) {
  gradcheck_alibi(kSmall, default_pos(2, 7, 5), 4);
  gradcheck_alibi(kLong, default_pos(2, 37, 5), 5);
  Rng rng(6);
  gradcheck_alibi(kSmall, random_sorted_pos(rng, 2, 7, 40), 7);
  gradcheck_alibi(kLong, random_sorted_pos(rng, 2, 37, 120), 8);
}

TEST(AttentionGrad, T5ShiftedAndRandomPositions) {
  gradcheck_t5(kSmall, default_pos(2, 7, 5), 9);
  gradcheck_t5(kLong, default_pos(2, 37, 5), 10);  // distances up to 36: log buckets 16 .. 22
  Rng rng(11);
  gradcheck_t5(kSmall, random_sorted_pos(rng, 2, 7, 60), 12);
  const auto pos = random_sorted_pos(rng, 2, 37, 400);  // distances past 128: the last bucket too
  EXPECT_GT(pos[36] - pos[0], 128);
  gradcheck_t5(kLong, pos, 13);
}

// ---------------------------------------------------------------------------------------------------------------
// Forward values

template <class BiasFn, class Bias>
void check_against_naive(const Shape& s, const std::vector<int>& pos, const Bias& bias, BiasFn fn, std::uint64_t seed) {
  Rng rng(seed);
  auto qkv = random_normal(rng, s.nqkv());
  std::vector<double> out(s.nout()), probs(s.nprobs()), rout, rprobs;
  attention_forward(out.data(), probs.data(), qkv.data(), pos.data(), bias, s.B, s.T, s.C, s.NH, s.scale());
  naive_forward(rout, rprobs, qkv, pos, fn, s.B, s.T, s.C, s.NH, s.scale());
  for (std::size_t i = 0; i < out.size(); i++) ASSERT_NEAR(out[i], rout[i], 1e-12) << i;
  for (std::size_t i = 0; i < probs.size(); i++) ASSERT_NEAR(probs[i], rprobs[i], 1e-13) << i;
}

TEST(AttentionForward, MatchesNaiveReference) {
  Rng rng(20);
  const auto pos = random_sorted_pos(rng, 2, 37, 300);
  check_against_naive(kLong, pos, NoBias{}, [](int, int, int) { return 0.0; }, 21);
  const auto slopes = alibi_slopes(3);
  check_against_naive(kLong, pos, AlibiBias{slopes.data()},
                      [&](int h, int pi, int pj) { return -static_cast<double>(slopes[h]) * (pi - pj); }, 22);
  auto table = random_normal(rng, static_cast<std::size_t>(kT5Buckets) * 3);
  check_against_naive(kLong, pos, T5Bias<double>{table.data(), nullptr, 3},
                      [&](int h, int pi, int pj) { return table[t5_bucket(pi - pj) * 3 + h]; }, 23);
  const Shape wide{2, 11, 96, 3};  // hd = 32
  check_against_naive(wide, default_pos(2, 11), NoBias{}, [](int, int, int) { return 0.0; }, 24);
}

TEST(AttentionForward, ProbsRowsSumToOneAndAreCausal) {
  const Shape s = kLong;
  Rng rng(30);
  auto qkv = random_normal(rng, s.nqkv(), 3.0);
  const auto pos = random_sorted_pos(rng, s.B, s.T, 500);
  const auto slopes = alibi_slopes(s.NH);
  std::vector<double> out(s.nout()), probs(s.nprobs(), 123.0);
  attention_forward(out.data(), probs.data(), qkv.data(), pos.data(), AlibiBias{slopes.data()}, s.B, s.T, s.C, s.NH,
                    s.scale());
  for (int bh = 0; bh < s.B * s.NH; bh++)
    for (int i = 0; i < s.T; i++) {
      const double* row = probs.data() + (static_cast<std::size_t>(bh) * s.T + i) * s.T;
      double sum = 0.0;
      for (int j = 0; j <= i; j++) {
        EXPECT_GE(row[j], 0.0);
        sum += row[j];
      }
      EXPECT_NEAR(sum, 1.0, 1e-12);
      for (int j = i + 1; j < s.T; j++) EXPECT_EQ(row[j], 0.0);
    }
  // the first row attends only to itself
  for (int bh = 0; bh < s.B * s.NH; bh++) EXPECT_EQ(probs[static_cast<std::size_t>(bh) * s.T * s.T], 1.0);
}

TEST(AttentionForward, LaterTokensNeverChangeEarlierOutputs) {
  const Shape s = kSmall;
  Rng rng(40);
  auto qkv = random_normal(rng, s.nqkv());
  const auto pos = default_pos(s.B, s.T);
  std::vector<double> table = random_normal(rng, static_cast<std::size_t>(kT5Buckets) * s.NH);
  T5Bias<double> bias{table.data(), nullptr, s.NH};
  std::vector<double> out0(s.nout()), probs0(s.nprobs()), out1(s.nout()), probs1(s.nprobs());
  attention_forward(out0.data(), probs0.data(), qkv.data(), pos.data(), bias, s.B, s.T, s.C, s.NH, s.scale());
  const int t0 = 4;
  for (int b = 0; b < s.B; b++)
    for (int c = 0; c < 3 * s.C; c++) qkv[(static_cast<std::size_t>(b) * s.T + t0) * 3 * s.C + c] += 10.0 + c;
  attention_forward(out1.data(), probs1.data(), qkv.data(), pos.data(), bias, s.B, s.T, s.C, s.NH, s.scale());
  for (int b = 0; b < s.B; b++) {
    for (int i = 0; i < s.T; i++)
      for (int c = 0; c < s.C; c++) {
        const std::size_t k = (static_cast<std::size_t>(b) * s.T + i) * s.C + c;
        if (i < t0)
          EXPECT_EQ(out0[k], out1[k]) << "b " << b << " i " << i;
        else
          EXPECT_NE(out0[k], out1[k]) << "b " << b << " i " << i;
      }
    for (int h = 0; h < s.NH; h++)
      for (int i = 0; i < t0; i++)
        for (int j = 0; j < s.T; j++) {
          const std::size_t k = ((static_cast<std::size_t>(b) * s.NH + h) * s.T + i) * s.T + j;
          EXPECT_EQ(probs0[k], probs1[k]);
        }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// float against double, thread-count independence

TEST(AttentionPrecision, FloatMatchesDouble) {
  const Shape s{2, 37, 48, 3};  // hd = 16
  Rng rng(50);
  auto qkv = random_normal(rng, s.nqkv());
  auto w = random_normal(rng, s.nout());
  auto table = random_normal(rng, static_cast<std::size_t>(kT5Buckets) * s.NH);
  const auto pos = random_sorted_pos(rng, s.B, s.T, 400);
  auto qkvf = test::cast_vec<float>(qkv), wf = test::cast_vec<float>(w), tablef = test::cast_vec<float>(table);

  std::vector<double> out(s.nout()), probs(s.nprobs()), dqkv(s.nqkv(), 0.0);
  std::vector<double> partial(static_cast<std::size_t>(s.B) * s.NH * kT5Buckets, 0.0), dtable(table.size(), 0.0);
  std::vector<float> outf(s.nout()), probsf(s.nprobs()), dqkvf(s.nqkv(), 0.0f);
  std::vector<float> partialf(partial.size(), 0.0f), dtablef(table.size(), 0.0f);

  T5Bias<double> bd{table.data(), partial.data(), s.NH};
  T5Bias<float> bf{tablef.data(), partialf.data(), s.NH};
  attention_forward(out.data(), probs.data(), qkv.data(), pos.data(), bd, s.B, s.T, s.C, s.NH, s.scale());
  attention_forward(outf.data(), probsf.data(), qkvf.data(), pos.data(), bf, s.B, s.T, s.C, s.NH,
                    static_cast<float>(s.scale()));
  attention_backward(dqkv.data(), w.data(), qkv.data(), probs.data(), pos.data(), bd, s.B, s.T, s.C, s.NH, s.scale());
  attention_backward(dqkvf.data(), wf.data(), qkvf.data(), probsf.data(), pos.data(), bf, s.B, s.T, s.C, s.NH,
                     static_cast<float>(s.scale()));
  t5_reduce_grad(dtable.data(), partial.data(), s.B, s.NH);
  t5_reduce_grad(dtablef.data(), partialf.data(), s.B, s.NH);

  EXPECT_LT(test::rel_l2(outf, out), 1e-6);
  EXPECT_LT(test::rel_l2(probsf, probs), 1e-6);
  EXPECT_LT(test::rel_l2(dqkvf, dqkv), 1e-5);
  EXPECT_LT(test::rel_l2(dtablef, dtable), 1e-5);

  const auto slopes = alibi_slopes(s.NH);
  AlibiBias ab{slopes.data()};
  attention_forward(out.data(), probs.data(), qkv.data(), pos.data(), ab, s.B, s.T, s.C, s.NH, s.scale());
  attention_forward(outf.data(), probsf.data(), qkvf.data(), pos.data(), ab, s.B, s.T, s.C, s.NH,
                    static_cast<float>(s.scale()));
  EXPECT_LT(test::rel_l2(outf, out), 1e-6);
  EXPECT_LT(test::rel_l2(probsf, probs), 1e-6);
}

TEST(AttentionDeterminism, SameBitsForAnyThreadCount) {
  const Shape s{3, 33, 64, 4};
  Rng rng(60);
  auto qkv = random_normal<float>(rng, s.nqkv());
  auto w = random_normal<float>(rng, s.nout());
  auto table = random_normal<float>(rng, static_cast<std::size_t>(kT5Buckets) * s.NH);
  const auto pos = random_sorted_pos(rng, s.B, s.T, 300);
  auto run = [&](int threads, std::vector<float>& out, std::vector<float>& dqkv, std::vector<float>& partial) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    out.assign(s.nout(), 0.0f);
    dqkv.assign(s.nqkv(), 0.0f);
    partial.assign(static_cast<std::size_t>(s.B) * s.NH * kT5Buckets, 0.0f);
    std::vector<float> probs(s.nprobs());
    T5Bias<float> b{table.data(), partial.data(), s.NH};
    attention_forward(out.data(), probs.data(), qkv.data(), pos.data(), b, s.B, s.T, s.C, s.NH, 0.125f);
    attention_backward(dqkv.data(), w.data(), qkv.data(), probs.data(), pos.data(), b, s.B, s.T, s.C, s.NH, 0.125f);
    omp_set_num_threads(saved);
  };
  std::vector<float> o1, d1, p1, o3, d3, p3;
  run(1, o1, d1, p1);
  run(3, o3, d3, p3);
  EXPECT_TRUE(test::bit_equal(o1, o3));
  EXPECT_TRUE(test::bit_equal(d1, d3));
  EXPECT_TRUE(test::bit_equal(p1, p3));
}

TEST(AttentionShape, InvalidShapesThrowAndEmptyIsNoOp) {
  std::vector<float> buf(64), probs(64);
  std::vector<int> pos(4, 0);
  EXPECT_THROW(attention_forward(buf.data(), probs.data(), buf.data(), pos.data(), NoBias{}, 1, 2, 10, 3, 1.0f),
               ConfigError);
  EXPECT_THROW(attention_forward(buf.data(), probs.data(), buf.data(), pos.data(), NoBias{}, 1, 2, 6, 0, 1.0f),
               ConfigError);
  NoBias nb;
  EXPECT_THROW(
      attention_backward(buf.data(), buf.data(), buf.data(), probs.data(), pos.data(), nb, -1, 2, 6, 3, 1.0f),
      ConfigError);
  EXPECT_NO_THROW(attention_forward<float>(nullptr, nullptr, nullptr, nullptr, NoBias{}, 0, 5, 6, 3, 1.0f));
}

// ---------------------------------------------------------------------------------------------------------------
// ALiBi through the kernel

// A bias with a plain (untemplated) call operator: +m_h * pos_j.
struct KeyOnly {
  static constexpr bool kLearned = false;
  const float* slopes;
  double operator()(int h, int, int pj) const { return static_cast<double>(slopes[h]) * pj; }
};

TEST(AttentionAlibi, DependsOnlyOnPositionDifferences) {
  const Shape s = kLong;
  Rng rng(70);
  auto qkv = random_normal(rng, s.nqkv());
  const auto pos = random_sorted_pos(rng, s.B, s.T, 200);
  const auto slopes = alibi_slopes(s.NH);
  AlibiBias bias{slopes.data()};
  std::vector<double> out0(s.nout()), probs0(s.nprobs()), out1(s.nout()), probs1(s.nprobs());
  attention_forward(out0.data(), probs0.data(), qkv.data(), pos.data(), bias, s.B, s.T, s.C, s.NH, s.scale());
  for (int shift : {1, 1000, 100000}) {
    auto p1 = pos;
    for (auto& p : p1) p += shift;
    attention_forward(out1.data(), probs1.data(), qkv.data(), p1.data(), bias, s.B, s.T, s.C, s.NH, s.scale());
    for (std::size_t i = 0; i < out0.size(); i++) ASSERT_NEAR(out0[i], out1[i], 1e-6);
    for (std::size_t i = 0; i < probs0.size(); i++) ASSERT_NEAR(probs0[i], probs1[i], 1e-6);
  }
  // The reference implementation's causal trick: a bias of +m_h * pos_j (key position only) differs from
  // -m_h (pos_i - pos_j) by a per-row constant, so the softmax is the same.
  attention_forward(out1.data(), probs1.data(), qkv.data(), pos.data(), KeyOnly{slopes.data()}, s.B, s.T, s.C, s.NH,
                    s.scale());
  for (std::size_t i = 0; i < out0.size(); i++) ASSERT_NEAR(out0[i], out1[i], 1e-9);
}

TEST(AttentionAlibi, BiasFunctorValues) {
  const auto slopes = alibi_slopes(8);
  AlibiBias b{slopes.data()};
  EXPECT_EQ(b(0, 10, 3), -0.5f * 7);
  EXPECT_EQ(b.operator()<double>(7, 1000, 0), -1000.0 / 256.0);
  EXPECT_EQ(b(3, 5, 5), 0.0f);
}

}  // namespace
}  // namespace stretch
