// Sliding-window attention (kernels/attention.hpp: key j visible to query i iff j <= i and i - j < window): the
// plain kernel against a naive masked double loop and finite differences, window >= T against no window, and the
// AVX-512 path (attention_fast.hpp) and the tiled kernel (attention_tiled.hpp) against the plain kernel with the
// same window, with every bias kind.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "core/cpu.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "kernels/attention.hpp"
#include "kernels/attention_tiled.hpp"
#include "kernels/gradcheck.hpp"
#include "position/alibi.hpp"
#include "position/t5.hpp"

namespace stretch {
namespace {

using test::random_normal;

enum class Kind { kNone, kAlibi, kT5 };
const char* name(Kind k) { return k == Kind::kNone ? "none" : (k == Kind::kAlibi ? "alibi" : "t5"); }

struct Shape {
  int B, T, C, NH;
  std::size_t nqkv() const { return static_cast<std::size_t>(B) * T * 3 * C; }
  std::size_t nout() const { return static_cast<std::size_t>(B) * T * C; }
  std::size_t nprobs() const { return static_cast<std::size_t>(B) * NH * T * T; }
  double scale() const { return 1.0 / std::sqrt(static_cast<double>(C / NH)); }
  std::string str() const {
    return "B=" + std::to_string(B) + " T=" + std::to_string(T) + " C=" + std::to_string(C) +
           " NH=" + std::to_string(NH);
  }
};

// Distinct, increasing, not contiguous positions (so a position-based window would differ from the index-based one).
std::vector<int> test_pos(int B, int T) {
  std::vector<int> p(static_cast<std::size_t>(B) * T);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) p[static_cast<std::size_t>(b) * T + t] = 3 * t + b + 2;
  return p;
}

bool visible(int i, int j, int window) { return j <= i && (window == 0 || i - j < window); }

// Naive double reference with an explicit visibility mask. bias(h, pi, pj) -> double.
template <class BiasFn>
void naive_forward(std::vector<double>& out, std::vector<double>& probs, const std::vector<double>& qkv,
                   const std::vector<int>& pos, BiasFn bias, const Shape& s, int window) {
  const int hd = s.C / s.NH, T = s.T, C = s.C;
  out.assign(s.nout(), 0.0);
  probs.assign(s.nprobs(), 0.0);
  auto at = [&](int b, int t, int c) { return qkv[(static_cast<std::size_t>(b) * T + t) * 3 * C + c]; };
  for (int b = 0; b < s.B; b++)
    for (int h = 0; h < s.NH; h++)
      for (int i = 0; i < T; i++) {
        std::vector<double> sc(static_cast<std::size_t>(T), -INFINITY);
        double mx = -INFINITY;
        for (int j = 0; j < T; j++) {
          if (!visible(i, j, window)) continue;
          double dt = 0.0;
          for (int d = 0; d < hd; d++) dt += at(b, i, h * hd + d) * at(b, j, C + h * hd + d);
          sc[j] = s.scale() * dt + bias(h, pos[b * T + i], pos[b * T + j]);
          mx = std::max(mx, sc[j]);
        }
        double z = 0.0;
        for (int j = 0; j < T; j++) z += visible(i, j, window) ? std::exp(sc[j] - mx) : 0.0;
        for (int j = 0; j < T; j++) {
          const double p = visible(i, j, window) ? std::exp(sc[j] - mx) / z : 0.0;
          probs[((static_cast<std::size_t>(b) * s.NH + h) * T + i) * T + j] = p;
          for (int d = 0; d < hd; d++)
            out[(static_cast<std::size_t>(b) * T + i) * C + h * hd + d] += p * at(b, j, 2 * C + h * hd + d);
        }
      }
}

// ---------------------------------------------------------------------------------------------------------------
// Plain kernel against the naive masked reference

TEST(AttentionWindow, PlainMatchesNaiveMaskedReference) {
  const Shape shapes[] = {{2, 37, 12, 3}, {1, 20, 8, 1}, {2, 11, 96, 3}};
  std::uint64_t seed = 100;
  for (const Shape& s : shapes)
    for (int window : {1, 2, 3, 5, 8, 16, s.T - 1, s.T, s.T + 5, 0}) {
      SCOPED_TRACE(s.str() + " window=" + std::to_string(window));
      Rng rng(seed++);
      const auto qkv = random_normal(rng, s.nqkv());
      const auto pos = test_pos(s.B, s.T);
      const auto slopes = alibi_slopes(s.NH);
      std::vector<double> out(s.nout(), 7.0), probs(s.nprobs(), 7.0), rout, rprobs;
      attention_forward(out.data(), probs.data(), qkv.data(), pos.data(), AlibiBias{slopes.data()}, s.B, s.T, s.C,
                        s.NH, s.scale(), window);
      naive_forward(rout, rprobs, qkv, pos,
                    [&](int h, int pi, int pj) { return -static_cast<double>(slopes[h]) * (pi - pj); }, s, window);
      for (std::size_t i = 0; i < out.size(); i++) ASSERT_NEAR(out[i], rout[i], 1e-12) << i;
      for (std::size_t i = 0; i < probs.size(); i++) {
        ASSERT_NEAR(probs[i], rprobs[i], 1e-13) << i;
        if (rprobs[i] == 0.0) {
          ASSERT_EQ(probs[i], 0.0) << i;  // invisible entries exactly 0
        }
      }
    }
}

TEST(AttentionWindow, WindowOneAttendsToSelfOnly) {
  const Shape s{2, 9, 8, 2};
  Rng rng(5);
  const auto qkv = random_normal(rng, s.nqkv());
  const auto pos = test_pos(s.B, s.T);
  std::vector<double> out(s.nout()), probs(s.nprobs());
  attention_forward(out.data(), probs.data(), qkv.data(), pos.data(), NoBias{}, s.B, s.T, s.C, s.NH, s.scale(), 1);
  for (int b = 0; b < s.B; b++)
    for (int t = 0; t < s.T; t++)
      for (int c = 0; c < s.C; c++)
        EXPECT_EQ(out[(static_cast<std::size_t>(b) * s.T + t) * s.C + c],
                  qkv[(static_cast<std::size_t>(b) * s.T + t) * 3 * s.C + 2 * s.C + c]);
}

// A window >= T (and window 0) is plain causal attention, bit for bit, in all three kernels.
TEST(AttentionWindow, WindowAtLeastTEqualsFull) {
  const Shape s{2, 45, 96, 3};  // hd = 32: the fast path for float
  Rng rng(9);
  const auto qkvd = random_normal(rng, s.nqkv());
  const auto wd = random_normal(rng, s.nout());
  const auto qkv = test::cast_vec<float>(qkvd), w = test::cast_vec<float>(wd);
  const auto pos = test_pos(s.B, s.T);
  const auto slopes = alibi_slopes(s.NH);
  const AlibiBias bias{slopes.data()};
  const float scale = static_cast<float>(s.scale());
  auto run = [&](int window, std::vector<float>& out, std::vector<float>& dqkv, std::vector<float>& tiled) {
    std::vector<float> probs(s.nprobs());
    out.assign(s.nout(), 0.0f);
    dqkv.assign(s.nqkv(), 0.0f);
    tiled.assign(s.nout(), 0.0f);
    AlibiBias b = bias;
    attention_forward(out.data(), probs.data(), qkv.data(), pos.data(), b, s.B, s.T, s.C, s.NH, scale, window);
    attention_backward(dqkv.data(), w.data(), qkv.data(), probs.data(), pos.data(), b, s.B, s.T, s.C, s.NH, scale,
                       window);
    attention_forward_tiled(tiled.data(), qkv.data(), pos.data(), b, s.B, s.T, s.C, s.NH, scale, window);
  };
  std::vector<float> out0, dq0, t0;
  run(0, out0, dq0, t0);
  for (int window : {s.T, s.T + 1, 1 << 20}) {
    std::vector<float> out, dq, t;
    run(window, out, dq, t);
    EXPECT_TRUE(test::bit_equal(out, out0)) << window;
    EXPECT_TRUE(test::bit_equal(dq, dq0)) << window;
    EXPECT_TRUE(test::bit_equal(t, t0)) << window;
  }
  // and a window of T - 1 does differ (only in the rows that lose key 0)
  std::vector<float> out, dq, t;
  run(s.T - 1, out, dq, t);
  EXPECT_FALSE(test::bit_equal(out, out0));
  for (int b = 0; b < s.B; b++)
    for (int i = 0; i < s.T - 1; i++)
      for (int c = 0; c < s.C; c++) {
        const std::size_t k = (static_cast<std::size_t>(b) * s.T + i) * s.C + c;
        ASSERT_EQ(out[k], out0[k]);
      }
}

TEST(AttentionWindow, NegativeWindowRejected) {
  std::vector<float> out(12), probs(16), qkv(36), dqkv(36);
  std::vector<int> pos(4, 0);
  NoBias b;
  EXPECT_THROW(attention_forward(out.data(), probs.data(), qkv.data(), pos.data(), b, 1, 4, 3, 1, 1.0f, -1),
               ConfigError);
  EXPECT_THROW(attention_backward(dqkv.data(), out.data(), qkv.data(), probs.data(), pos.data(), b, 1, 4, 3, 1, 1.0f,
                                  -2),
               ConfigError);
  EXPECT_THROW(attention_forward_tiled(out.data(), qkv.data(), pos.data(), b, 1, 4, 3, 1, 1.0f, -1), ConfigError);
}

// ---------------------------------------------------------------------------------------------------------------
// Finite differences (double, plain kernel)

struct OneThread {
  int saved = omp_get_max_threads();
  OneThread() { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(saved); }
};

double precise_weighted_sum(const std::vector<double>& w, const double* out) {
  long double s = 0.0L;
  for (std::size_t k = 0; k < w.size(); k++) s += static_cast<long double>(w[k]) * static_cast<long double>(out[k]);
  return static_cast<double>(s);
}

// The settings of test_attention.cpp (see fd_options there).
test::GradCheckOptions fd_options() {
  test::GradCheckOptions o;
  o.eps = 1e-5;
  o.floor = 1e-4;
  return o;
}

void gradcheck_window(const Shape& s, Kind kind, int window, std::uint64_t seed) {
  SCOPED_TRACE(s.str() + " " + name(kind) + " window=" + std::to_string(window));
  OneThread one;
  Rng rng(seed);
  auto qkv = random_normal(rng, s.nqkv());
  const auto w = random_normal(rng, s.nout());
  auto table = random_normal(rng, static_cast<std::size_t>(kT5Buckets) * s.NH);
  const auto pos = test_pos(s.B, s.T);
  const auto slopes = alibi_slopes(s.NH);
  std::vector<double> out(s.nout()), probs(s.nprobs()), dqkv(s.nqkv(), 0.0);
  std::vector<double> partial(static_cast<std::size_t>(s.B) * s.NH * kT5Buckets, 0.0), dtable(table.size(), 0.0);
  auto check = [&](auto& bias) {
    auto loss = [&] {
      attention_forward(out.data(), probs.data(), qkv.data(), pos.data(), bias, s.B, s.T, s.C, s.NH, s.scale(),
                        window);
      return precise_weighted_sum(w, out.data());
    };
    loss();
    attention_backward(dqkv.data(), w.data(), qkv.data(), probs.data(), pos.data(), bias, s.B, s.T, s.C, s.NH,
                       s.scale(), window);
    std::vector<test::GradArg> args{{"qkv", qkv.data(), dqkv.data(), qkv.size()}};
    if (kind == Kind::kT5) {
      t5_reduce_grad(dtable.data(), partial.data(), s.B, s.NH);
      args.push_back({"t5_bias", table.data(), dtable.data(), table.size()});
    }
    EXPECT_TRUE(test::gradcheck_ok(loss, args, fd_options()));
  };
  if (kind == Kind::kNone) {
    NoBias b;
    check(b);
  } else if (kind == Kind::kAlibi) {
    AlibiBias b{slopes.data()};
    check(b);
  } else {
    T5Bias<double> b{table.data(), partial.data(), s.NH};
    check(b);
  }
  // keys outside every window get no gradient from them: with window 1, dk = 0 (softmax over one key)
  if (window == 1) {
    for (int b = 0; b < s.B; b++)
      for (int t = 0; t < s.T; t++)
        for (int c = 0; c < s.C; c++) {
          EXPECT_EQ(dqkv[(static_cast<std::size_t>(b) * s.T + t) * 3 * s.C + s.C + c], 0.0);
        }
  }
}

TEST(AttentionWindow, GradientsMatchFiniteDifferences) {
  const Shape small{2, 7, 12, 3}, longer{2, 37, 12, 3}, wide{1, 9, 80, 2};
  std::uint64_t seed = 300;
  for (int window : {1, 2, 3, 6})
    for (Kind k : {Kind::kNone, Kind::kAlibi, Kind::kT5}) gradcheck_window(small, k, window, seed++);
  for (int window : {4, 17})
    for (Kind k : {Kind::kNone, Kind::kT5}) gradcheck_window(longer, k, window, seed++);
  gradcheck_window(wide, Kind::kNone, 4, seed++);
}

// ---------------------------------------------------------------------------------------------------------------
// The AVX-512 float path against the plain kernel with the same window

template <class F>
struct Result {
  std::vector<F> out, probs, dqkv, dtable;
};

template <class F>
Result<F> run_kernel(const Shape& s, Kind kind, bool fast, int window, const std::vector<double>& qkv,
                     const std::vector<double>& w, const std::vector<double>& dqkv0, const std::vector<double>& table,
                     const std::vector<int>& pos) {
  const auto q = test::cast_vec<F>(qkv), wf = test::cast_vec<F>(w), tf = test::cast_vec<F>(table);
  Result<F> r;
  r.out.assign(s.nout(), F(7));
  r.probs.assign(s.nprobs(), F(7));
  r.dqkv = test::cast_vec<F>(dqkv0);
  std::vector<F> partial(static_cast<std::size_t>(s.B) * s.NH * kT5Buckets, F(0));
  r.dtable.assign(table.size(), F(0));
  const F scale = static_cast<F>(s.scale());
  const auto slopes = alibi_slopes(s.NH);
  auto go = [&](auto& bias) {
    if (fast) {
      if constexpr (std::is_same_v<F, float>) {
        attention_fast::forward(r.out.data(), r.probs.data(), q.data(), pos.data(), bias, s.B, s.T, s.C, s.NH,
                                scale, window);
        attention_fast::backward(r.dqkv.data(), wf.data(), q.data(), r.probs.data(), pos.data(), bias, s.B, s.T, s.C,
                                 s.NH, scale, window);
      } else {
        ADD_FAILURE() << "the register-blocked path is float only";
      }
    } else {
      attention_detail::forward_generic(r.out.data(), r.probs.data(), q.data(), pos.data(), bias, s.B, s.T, s.C, s.NH,
                                        scale, window);
      attention_detail::backward_generic(r.dqkv.data(), wf.data(), q.data(), r.probs.data(), pos.data(), bias, s.B,
                                         s.T, s.C, s.NH, scale, window);
    }
  };
  if (kind == Kind::kNone) {
    NoBias b;
    go(b);
  } else if (kind == Kind::kAlibi) {
    AlibiBias b{slopes.data()};
    go(b);
  } else {
    T5Bias<F> b{tf.data(), partial.data(), s.NH};
    go(b);
    t5_reduce_grad(r.dtable.data(), partial.data(), s.B, s.NH);
  }
  return r;
}

void check_fast(const Shape& s, Kind kind, int window, std::uint64_t seed) {
  SCOPED_TRACE(s.str() + " " + name(kind) + " window=" + std::to_string(window));
  Rng rng(seed);
  const auto qkv = random_normal(rng, s.nqkv());
  const auto w = random_normal(rng, s.nout());
  const auto dqkv0 = random_normal(rng, s.nqkv());
  const auto table = random_normal(rng, static_cast<std::size_t>(kT5Buckets) * s.NH);
  const auto pos = test_pos(s.B, s.T);
  const auto ref = run_kernel<double>(s, kind, false, window, qkv, w, dqkv0, table, pos);
  const auto plain = run_kernel<float>(s, kind, false, window, qkv, w, dqkv0, table, pos);
  const auto fast = run_kernel<float>(s, kind, true, window, qkv, w, dqkv0, table, pos);
  // entries outside the window are exactly 0
  for (int bh = 0; bh < s.B * s.NH; bh++)
    for (int i = 0; i < s.T; i++)
      for (int j = 0; j < s.T; j++)
        if (!visible(i, j, window)) {
          ASSERT_EQ(fast.probs[(static_cast<std::size_t>(bh) * s.T + i) * s.T + j], 0.0f);
        }
  EXPECT_LT(test::rel_l2(fast.out, ref.out), 1e-6);
  EXPECT_LT(test::rel_l2(fast.probs, ref.probs), 1e-6);
  EXPECT_LT(test::rel_l2(fast.dqkv, ref.dqkv), 1e-5);
  EXPECT_LT(test::rel_l2(fast.out, plain.out), 1e-6);
  EXPECT_LT(test::rel_l2(fast.probs, plain.probs), 1e-6);
  EXPECT_LT(test::rel_l2(fast.dqkv, plain.dqkv), 1e-5);
  EXPECT_LT(test::rel_l2(plain.dqkv, ref.dqkv), 1e-5);
  if (kind == Kind::kT5) {
    EXPECT_LT(test::rel_l2(fast.dtable, ref.dtable), 1e-5);
    EXPECT_LT(test::rel_l2(fast.dtable, plain.dtable), 1e-5);
  }
}

TEST(AttentionWindow, FastPathMatchesPlainKernel) {
  if (!cpu_features().avx512) GTEST_SKIP() << "this CPU has no AVX-512: the register-blocked path never runs here";
  // hd 16 .. 64, T not a multiple of the 8-row tiles or 32-key score tiles, windows narrower than a register tile
  // (1 .. 7), equal to it (8), straddling score tiles (31 .. 33) and wider than T
  const Shape shapes[] = {{2, 37, 64, 2}, {1, 70, 128, 2}, {2, 9, 32, 2}, {1, 100, 96, 2}, {1, 33, 80, 1}};
  std::uint64_t seed = 500;
  for (const Shape& s : shapes)
    for (int window : {1, 3, 7, 8, 9, 16, 31, 32, 33, 50, 200})
      for (Kind k : {Kind::kNone, Kind::kAlibi, Kind::kT5}) check_fast(s, k, window, seed++);
}

TEST(AttentionWindow, FastPathSameBitsForAnyThreadCount) {
  if (!cpu_features().avx512) GTEST_SKIP() << "this CPU has no AVX-512: the register-blocked path never runs here";
  const Shape s{3, 45, 96, 2};
  Rng rng(77);
  const auto qkv = random_normal(rng, s.nqkv());
  const auto w = random_normal(rng, s.nout());
  const auto dqkv0 = random_normal(rng, s.nqkv());
  const auto table = random_normal(rng, static_cast<std::size_t>(kT5Buckets) * s.NH);
  const auto pos = test_pos(s.B, s.T);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const auto r1 = run_kernel<float>(s, Kind::kT5, true, 13, qkv, w, dqkv0, table, pos);
  omp_set_num_threads(3);
  const auto r3 = run_kernel<float>(s, Kind::kT5, true, 13, qkv, w, dqkv0, table, pos);
  omp_set_num_threads(saved);
  EXPECT_TRUE(test::bit_equal(r1.out, r3.out));
  EXPECT_TRUE(test::bit_equal(r1.probs, r3.probs));
  EXPECT_TRUE(test::bit_equal(r1.dqkv, r3.dqkv));
  EXPECT_TRUE(test::bit_equal(r1.dtable, r3.dtable));
}

// ---------------------------------------------------------------------------------------------------------------
// The tiled kernel against the plain kernel with the same window

// max |a - b| / max |b|
template <class F>
double rel_diff(const std::vector<F>& a, const std::vector<F>& b) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < a.size(); i++) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  }
  return den > 0.0 ? num / den : num;
}

template <class F>
double compare_tiled(Kind kind, int B, int T, int NH, int hd, int window, std::uint64_t seed) {
  Rng rng(seed);
  const int C = NH * hd;
  const auto qkv = random_normal<F>(rng, static_cast<std::size_t>(B) * T * 3 * C);
  const auto pos = test_pos(B, T);
  const F scale = static_cast<F>(1.0 / std::sqrt(static_cast<double>(hd)));
  std::vector<F> ref(static_cast<std::size_t>(B) * T * C), out(ref.size(), F(-7));
  std::vector<F> probs(static_cast<std::size_t>(B) * NH * T * T);
  const auto slopes = alibi_slopes(NH);
  const auto table = random_normal<F>(rng, static_cast<std::size_t>(kT5Buckets) * NH);
  auto run = [&](const auto& bias) {
    attention_forward(ref.data(), probs.data(), qkv.data(), pos.data(), bias, B, T, C, NH, scale, window);
    attention_forward_tiled(out.data(), qkv.data(), pos.data(), bias, B, T, C, NH, scale, window);
  };
  if (kind == Kind::kNone) run(NoBias{});
  else if (kind == Kind::kAlibi) run(AlibiBias{slopes.data()});
  else run(T5Bias<F>{table.data(), nullptr, NH});
  if (!std::all_of(out.begin(), out.end(), [](F x) { return std::isfinite(x); })) return INFINITY;
  return rel_diff(out, ref);
}

TEST(AttentionWindow, TiledMatchesPlainKernel) {
  // windows narrower than a register tile, around the 64-key block size, and spanning several blocks
  int cases = 0;
  for (Kind kind : {Kind::kNone, Kind::kAlibi, Kind::kT5})
    for (int T : {1, 7, 63, 65, 130, 300})
      for (int window : {1, 5, 16, 63, 64, 65, 100, 200})
        for (int hd : {8, 32, 40}) {
          const double rel = compare_tiled<float>(kind, 2, T, 3, hd, window, 2000 + cases);
          EXPECT_LT(rel, 1e-5) << name(kind) << " T=" << T << " window=" << window << " hd=" << hd;
          cases++;
        }
  for (Kind kind : {Kind::kNone, Kind::kT5})
    for (int T : {7, 130, 300})
      for (int window : {1, 9, 64, 129}) {
        const double rel = compare_tiled<double>(kind, 1, T, 2, 40, window, 3000 + cases++);
        EXPECT_LT(rel, 1e-12) << name(kind) << " T=" << T << " window=" << window;
      }
}

// Long sequence, narrow window: keys more than a window back never matter (only key blocks in the window are read).
TEST(AttentionWindow, TiledLongSequenceIsLocal) {
  const int B = 1, T = 4096, NH = 2, hd = 32, C = NH * hd, window = 100;
  EXPECT_LT(compare_tiled<float>(Kind::kAlibi, B, T, NH, hd, window, 4242), 1e-5);
  Rng rng(8);
  auto qkv = random_normal<float>(rng, static_cast<std::size_t>(B) * T * 3 * C);
  const auto pos = test_pos(B, T);
  std::vector<float> a(static_cast<std::size_t>(B) * T * C), b(a.size());
  attention_forward_tiled(a.data(), qkv.data(), pos.data(), NoBias{}, B, T, C, NH, 0.2f, window);
  // change the keys and values of token 1000: only outputs 1000 .. 1099 may change
  for (int c = C; c < 3 * C; c++) qkv[static_cast<std::size_t>(1000) * 3 * C + c] += 1.0f;
  attention_forward_tiled(b.data(), qkv.data(), pos.data(), NoBias{}, B, T, C, NH, 0.2f, window);
  for (int i = 0; i < T; i++) {
    const bool same = std::equal(a.begin() + static_cast<std::ptrdiff_t>(i) * C,
                                 a.begin() + static_cast<std::ptrdiff_t>(i + 1) * C,
                                 b.begin() + static_cast<std::ptrdiff_t>(i) * C);
    EXPECT_EQ(same, i < 1000 || i >= 1000 + window) << "row " << i;
  }
}

}  // namespace
}  // namespace stretch
