#include "kernels/layernorm.hpp"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <vector>

#include "kernels/gradcheck.hpp"

namespace stretch::test {
namespace {

constexpr int N = 7, C = 13;

struct LnData {
  std::vector<double> inp, weight, bias, w;
  explicit LnData(std::uint64_t seed) {
    Rng rng(seed);
    inp = random_normal(rng, N * C, 2.0, 0.5);
    weight = random_normal(rng, C, 0.5, 1.0);
    bias = random_normal(rng, C, 0.3);
    w = random_normal(rng, N * C);
  }
};

void fd_layernorm(bool with_bias) {
  LnData d(21);
  const double* b = with_bias ? d.bias.data() : nullptr;
  std::vector<double> out(N * C), mean(N), rstd(N);
  auto loss = [&] {
    std::vector<double> o(N * C), m(N), r(N);
    layernorm_forward<double>(o.data(), m.data(), r.data(), d.inp.data(), d.weight.data(), b, N, C);
    return weighted_sum(d.w, o.data());
  };
  layernorm_forward<double>(out.data(), mean.data(), rstd.data(), d.inp.data(), d.weight.data(), b, N, C);
  std::vector<double> dinp(N * C), dweight(C), dbias(C);
  layernorm_backward<double>(dinp.data(), dweight.data(), with_bias ? dbias.data() : nullptr, d.w.data(),
                             d.inp.data(), d.weight.data(), mean.data(), rstd.data(), N, C);
  std::vector<GradArg> args = {{"inp", d.inp.data(), dinp.data(), d.inp.size()},
                               {"weight", d.weight.data(), dweight.data(), d.weight.size()}};
  if (with_bias) args.push_back({"bias", d.bias.data(), dbias.data(), d.bias.size()});
  EXPECT_TRUE(gradcheck_ok(loss, args));
  if (!with_bias) {
    EXPECT_EQ(dbias, std::vector<double>(C, 0.0));
  }
}

TEST(LayerNorm, GradcheckWithBias) { fd_layernorm(true); }
TEST(LayerNorm, GradcheckNoBias) { fd_layernorm(false); }

TEST(LayerNorm, ForwardMatchesFormula) {
  LnData d(22);
  for (bool with_bias : {true, false}) {
    std::vector<double> out(N * C), mean(N), rstd(N);
    const double eps = 1e-5;
    layernorm_forward<double>(out.data(), mean.data(), rstd.data(), d.inp.data(), d.weight.data(),
                              with_bias ? d.bias.data() : nullptr, N, C, eps);
    for (int n = 0; n < N; n++) {
      long double m = 0, v = 0;
      for (int c = 0; c < C; c++) m += d.inp[n * C + c];
      m /= C;
      for (int c = 0; c < C; c++) v += (d.inp[n * C + c] - m) * (d.inp[n * C + c] - m);
      v /= C;  // biased
      const long double s = 1.0L / std::sqrt(v + eps);
      EXPECT_NEAR(mean[n], static_cast<double>(m), 1e-14);
      EXPECT_NEAR(rstd[n], static_cast<double>(s), 1e-13 * static_cast<double>(s));
      for (int c = 0; c < C; c++) {
        const long double y = (d.inp[n * C + c] - m) * s * d.weight[c] + (with_bias ? d.bias[c] : 0.0);
        EXPECT_NEAR(out[n * C + c], static_cast<double>(y), 1e-13);
      }
    }
  }
}

TEST(LayerNorm, TwoPassVarianceWithLargeOffset) {
  // mean 1e4, spread 1: a one-pass E[x^2] - E[x]^2 in float loses every digit here.
  const int n = 2, c = 64;
  Rng rng(4);
  const auto x = random_normal<float>(rng, n * c, 1.0, 1e4);
  const std::vector<float> weight(c, 1.0f);
  std::vector<float> out(n * c), mean(n), rstd(n);
  layernorm_forward<float>(out.data(), mean.data(), rstd.data(), x.data(), weight.data(), nullptr, n, c);
  std::vector<double> outd(n * c), meand(n), rstdd(n);
  const auto xd = cast_vec<double>(x), wd = cast_vec<double>(weight);
  layernorm_forward<double>(outd.data(), meand.data(), rstdd.data(), xd.data(), wd.data(), nullptr, n, c);
  EXPECT_LT(rel_l2(rstd, rstdd), 1e-3);
  EXPECT_LT(rel_l2(out, outd), 1e-3);
}

TEST(LayerNorm, FloatMatchesDouble) {
  const int n = 33, c = 257;
  Rng rng(5);
  const auto x = random_normal<float>(rng, n * c, 1.5, 0.3), wt = random_normal<float>(rng, c, 0.2, 1.0);
  const auto bs = random_normal<float>(rng, c), dout = random_normal<float>(rng, n * c);
  std::vector<float> out(n * c), mean(n), rstd(n), dinp(n * c), dw(c), db(c);
  layernorm_forward<float>(out.data(), mean.data(), rstd.data(), x.data(), wt.data(), bs.data(), n, c);
  layernorm_backward<float>(dinp.data(), dw.data(), db.data(), dout.data(), x.data(), wt.data(), mean.data(),
                            rstd.data(), n, c);
  const auto xd = cast_vec<double>(x), wd = cast_vec<double>(wt), bd = cast_vec<double>(bs),
             doutd = cast_vec<double>(dout);
  std::vector<double> outd(n * c), meand(n), rstdd(n), dinpd(n * c), dwd(c), dbd(c);
  layernorm_forward<double>(outd.data(), meand.data(), rstdd.data(), xd.data(), wd.data(), bd.data(), n, c);
  layernorm_backward<double>(dinpd.data(), dwd.data(), dbd.data(), doutd.data(), xd.data(), wd.data(), meand.data(),
                             rstdd.data(), n, c);
  EXPECT_LT(rel_l2(out, outd), 1e-5);
  EXPECT_LT(rel_l2(mean, meand), 1e-5);
  EXPECT_LT(rel_l2(rstd, rstdd), 1e-5);
  EXPECT_LT(rel_l2(dinp, dinpd), 1e-5);
  EXPECT_LT(rel_l2(dw, dwd), 1e-5);
  EXPECT_LT(rel_l2(db, dbd), 1e-5);
}

TEST(LayerNorm, BackwardAccumulates) {
  LnData d(23);
  std::vector<double> out(N * C), mean(N), rstd(N);
  layernorm_forward<double>(out.data(), mean.data(), rstd.data(), d.inp.data(), d.weight.data(), d.bias.data(), N, C);
  std::vector<double> g1[3] = {std::vector<double>(N * C), std::vector<double>(C), std::vector<double>(C)};
  std::vector<double> g2[3] = {g1[0], g1[1], g1[2]};
  layernorm_backward<double>(g1[0].data(), g1[1].data(), g1[2].data(), d.w.data(), d.inp.data(), d.weight.data(),
                             mean.data(), rstd.data(), N, C);
  for (int k = 0; k < 2; k++)
    layernorm_backward<double>(g2[0].data(), g2[1].data(), g2[2].data(), d.w.data(), d.inp.data(), d.weight.data(),
                               mean.data(), rstd.data(), N, C);
  for (int a = 0; a < 3; a++) {
    for (std::size_t i = 0; i < g1[a].size(); i++) {
      ASSERT_NE(g1[a][i], 0.0);
      EXPECT_EQ(g2[a][i], 2 * g1[a][i]);
    }
  }
}

// Same results run to run, and for dweight/dbias (column-parallel) whatever the thread count.
TEST(LayerNorm, Deterministic) {
  const int n = 300, c = 200;
  Rng rng(6);
  const auto x = random_normal<float>(rng, n * c), wt = random_normal<float>(rng, c, 0.2, 1.0);
  const auto bs = random_normal<float>(rng, c), dout = random_normal<float>(rng, n * c);
  auto run = [&](std::vector<float>* res) {
    std::vector<float> out(n * c), mean(n), rstd(n), dinp(n * c), dw(c), db(c);
    layernorm_forward<float>(out.data(), mean.data(), rstd.data(), x.data(), wt.data(), bs.data(), n, c);
    layernorm_backward<float>(dinp.data(), dw.data(), db.data(), dout.data(), x.data(), wt.data(), mean.data(),
                              rstd.data(), n, c);
    res[0] = out, res[1] = dinp, res[2] = dw, res[3] = db;
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
