#include "kernels/rmsnorm.hpp"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <vector>

#include "kernels/gradcheck.hpp"

namespace stretch::test {
namespace {

constexpr int N = 7, C = 13;  // odd shapes

struct RmsData {
  std::vector<double> inp, weight, w;
  explicit RmsData(std::uint64_t seed, int n = N, int c = C) {
    Rng rng(seed);
    inp = random_normal(rng, static_cast<std::size_t>(n) * c, 2.0, 0.5);
    weight = random_normal(rng, c, 0.5, 1.0);
    w = random_normal(rng, static_cast<std::size_t>(n) * c);
  }
};

void fd_rmsnorm(int n, int c, std::uint64_t seed) {
  RmsData d(seed, n, c);
  const std::size_t nc = static_cast<std::size_t>(n) * c;
  auto loss = [&] {
    std::vector<double> o(nc), r(n);
    rmsnorm_forward<double>(o.data(), r.data(), d.inp.data(), d.weight.data(), n, c);
    return weighted_sum(d.w, o.data());
  };
  std::vector<double> out(nc), rstd(n);
  rmsnorm_forward<double>(out.data(), rstd.data(), d.inp.data(), d.weight.data(), n, c);
  std::vector<double> dinp(nc), dweight(c);
  rmsnorm_backward<double>(dinp.data(), dweight.data(), d.w.data(), d.inp.data(), d.weight.data(), rstd.data(), n,
                           c);
  EXPECT_TRUE(gradcheck_ok(loss, {{"inp", d.inp.data(), dinp.data(), d.inp.size()},
                                  {"weight", d.weight.data(), dweight.data(), d.weight.size()}}));
}

TEST(RmsNorm, Gradcheck) { fd_rmsnorm(N, C, 41); }
TEST(RmsNorm, GradcheckOddShapes) {
  fd_rmsnorm(1, 1, 42);   // C = 1: out = sign(x) * w (up to eps), dinp ~ 0 except through eps
  fd_rmsnorm(3, 2, 43);
  fd_rmsnorm(5, 37, 44);  // more than one 32-column dweight block
  fd_rmsnorm(2, 64, 45);  // exactly two blocks
}

// A near-zero row: eps dominates the mean square, the gradient must still be right.
TEST(RmsNorm, GradcheckSmallRow) {
  const int n = 2, c = 9;
  RmsData d(46, n, c);
  for (int i = 0; i < c; i++) d.inp[i] *= 1e-3;  // mean square ~ 4e-6, comparable to eps = 1e-5
  std::vector<double> out(n * c), rstd(n), dinp(n * c), dweight(c);
  auto loss = [&] {
    std::vector<double> o(n * c), r(n);
    rmsnorm_forward<double>(o.data(), r.data(), d.inp.data(), d.weight.data(), n, c);
    return weighted_sum(d.w, o.data());
  };
  rmsnorm_forward<double>(out.data(), rstd.data(), d.inp.data(), d.weight.data(), n, c);
  rmsnorm_backward<double>(dinp.data(), dweight.data(), d.w.data(), d.inp.data(), d.weight.data(), rstd.data(), n,
                           c);
  GradCheckOptions opt;
  opt.eps = 1e-9;  // the inputs of row 0 are ~1e-3
  opt.tol = 1e-4;
  EXPECT_TRUE(gradcheck_ok(loss, {{"inp", d.inp.data(), dinp.data(), d.inp.size()},
                                  {"weight", d.weight.data(), dweight.data(), d.weight.size()}},
                           opt));
}

TEST(RmsNorm, ForwardMatchesFormula) {
  RmsData d(47);
  for (double eps : {1e-5, 1e-6, 0.5}) {
    std::vector<double> out(N * C), rstd(N);
    rmsnorm_forward<double>(out.data(), rstd.data(), d.inp.data(), d.weight.data(), N, C, eps);
    for (int n = 0; n < N; n++) {
      long double ms = 0;
      for (int c = 0; c < C; c++) ms += static_cast<long double>(d.inp[n * C + c]) * d.inp[n * C + c];
      ms /= C;
      const long double s = 1.0L / std::sqrt(ms + eps);
      EXPECT_NEAR(rstd[n], static_cast<double>(s), 1e-13 * static_cast<double>(s));
      for (int c = 0; c < C; c++) {
        const long double y = d.inp[n * C + c] * s * d.weight[c];
        EXPECT_NEAR(out[n * C + c], static_cast<double>(y), 1e-13);
      }
    }
  }
  // Hand value: x = (3, 4), mean square 12.5, eps 0 -> rstd = 1/sqrt(12.5); weight (1, 2)
  const double x[2] = {3.0, 4.0}, wt[2] = {1.0, 2.0};
  double y[2], r;
  rmsnorm_forward<double>(y, &r, x, wt, 1, 2, 0.0);
  EXPECT_NEAR(r, 1.0 / std::sqrt(12.5), 1e-16);
  EXPECT_NEAR(y[0], 3.0 / std::sqrt(12.5), 1e-15);
  EXPECT_NEAR(y[1], 8.0 / std::sqrt(12.5), 1e-15);
}

TEST(RmsNorm, FloatMatchesDouble) {
  const int n = 33, c = 257;
  Rng rng(48);
  const auto x = random_normal<float>(rng, n * c, 1.5, 0.3), wt = random_normal<float>(rng, c, 0.2, 1.0);
  const auto dout = random_normal<float>(rng, n * c);
  std::vector<float> out(n * c), rstd(n), dinp(n * c), dw(c);
  rmsnorm_forward<float>(out.data(), rstd.data(), x.data(), wt.data(), n, c);
  rmsnorm_backward<float>(dinp.data(), dw.data(), dout.data(), x.data(), wt.data(), rstd.data(), n, c);
  const auto xd = cast_vec<double>(x), wd = cast_vec<double>(wt), doutd = cast_vec<double>(dout);
  std::vector<double> outd(n * c), rstdd(n), dinpd(n * c), dwd(c);
  rmsnorm_forward<double>(outd.data(), rstdd.data(), xd.data(), wd.data(), n, c);
  rmsnorm_backward<double>(dinpd.data(), dwd.data(), doutd.data(), xd.data(), wd.data(), rstdd.data(), n, c);
  EXPECT_LT(rel_l2(out, outd), 1e-6);
  EXPECT_LT(rel_l2(rstd, rstdd), 1e-6);
  EXPECT_LT(rel_l2(dinp, dinpd), 1e-5);
  EXPECT_LT(rel_l2(dw, dwd), 1e-5);
}

TEST(RmsNorm, BackwardAccumulates) {
  RmsData d(49);
  std::vector<double> out(N * C), rstd(N);
  rmsnorm_forward<double>(out.data(), rstd.data(), d.inp.data(), d.weight.data(), N, C);
  std::vector<double> g1[2] = {std::vector<double>(N * C), std::vector<double>(C)};
  std::vector<double> g2[2] = {g1[0], g1[1]};
  rmsnorm_backward<double>(g1[0].data(), g1[1].data(), d.w.data(), d.inp.data(), d.weight.data(), rstd.data(), N,
                           C);
  for (int k = 0; k < 2; k++)
    rmsnorm_backward<double>(g2[0].data(), g2[1].data(), d.w.data(), d.inp.data(), d.weight.data(), rstd.data(), N,
                             C);
  for (int a = 0; a < 2; a++) {
    for (std::size_t i = 0; i < g1[a].size(); i++) {
      ASSERT_NE(g1[a][i], 0.0);
      EXPECT_EQ(g2[a][i], 2 * g1[a][i]);
    }
  }
}

// Same results run to run, and for dweight (column-parallel) whatever the thread count.
TEST(RmsNorm, Deterministic) {
  const int n = 300, c = 200;
  Rng rng(50);
  const auto x = random_normal<float>(rng, n * c), wt = random_normal<float>(rng, c, 0.2, 1.0);
  const auto dout = random_normal<float>(rng, n * c);
  auto run = [&](std::vector<float>* res) {
    std::vector<float> out(n * c), rstd(n), dinp(n * c), dw(c);
    rmsnorm_forward<float>(out.data(), rstd.data(), x.data(), wt.data(), n, c);
    rmsnorm_backward<float>(dinp.data(), dw.data(), dout.data(), x.data(), wt.data(), rstd.data(), n, c);
    res[0] = out, res[1] = rstd, res[2] = dinp, res[3] = dw;
  };
  std::vector<float> a[4], b[4], t1[4], t3[4];
  run(a);
  run(b);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  run(t1);
  omp_set_num_threads(3);
  run(t3);
  omp_set_num_threads(saved);
  for (int k = 0; k < 4; k++) {
    EXPECT_TRUE(bit_equal(a[k], b[k])) << k;
    EXPECT_TRUE(bit_equal(t1[k], t3[k])) << k;
    EXPECT_TRUE(bit_equal(a[k], t1[k])) << k;
  }
}

}  // namespace
}  // namespace stretch::test
