#include "kernels/gelu.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/gradcheck.hpp"

namespace stretch::test {
namespace {

long double gelu_formula(long double u) {
  const long double k = std::sqrt(2.0L / 3.14159265358979323846264338327950288L);
  return 0.5L * u * (1.0L + std::tanh(k * (u + 0.044715L * u * u * u)));
}

// Bulk points (gradients of order 0.01 .. 1) and tail points (gelu' down to 1e-7 or up to 1 + 1e-9). Further out on
// the negative side, 1 + tanh(..) cancels catastrophically (below x ~ -5.5 the formula itself, in any
// implementation, keeps fewer than 5 correct digits of gelu and gelu'), so there is nothing precise to check.
std::vector<double> bulk_points() {
  Rng rng(31);
  auto v = random_normal(rng, 37, 1.2);
  for (double x : {0.0, 1.0, -1.0, 2.5, -2.5, 1e-3, -1e-3}) v.push_back(x);
  return v;
}
const std::vector<double> kTailPoints = {-5.0, -4.0, -3.5, 4.0, 6.0, 9.0};

TEST(Gelu, ForwardMatchesFormula) {
  auto x = bulk_points();
  x.insert(x.end(), kTailPoints.begin(), kTailPoints.end());
  std::vector<double> y(x.size());
  gelu_forward<double>(y.data(), x.data(), x.size());
  for (std::size_t i = 0; i < x.size(); i++)
    EXPECT_NEAR(y[i], static_cast<double>(gelu_formula(x[i])), 1e-15 * (1 + std::fabs(x[i]))) << x[i];
  // GPT-2 / torch gelu(approximate="tanh") at 1
  const double one = 1.0;
  double g1;
  gelu_forward<double>(&g1, &one, 1);
  EXPECT_NEAR(g1, 0.8411919906082768, 1e-15);
}

TEST(Gelu, Gradcheck) {
  auto x = bulk_points();
  Rng rng(32);
  const auto w = random_normal(rng, x.size());
  std::vector<double> y(x.size());
  auto loss = [&] {
    gelu_forward<double>(y.data(), x.data(), x.size());
    return weighted_sum(w, y.data());
  };
  std::vector<double> dx(x.size());
  gelu_backward<double>(dx.data(), x.data(), w.data(), x.size());
  EXPECT_TRUE(gradcheck_ok(loss, {{"inp", x.data(), dx.data(), x.size()}}));
}

// In the tails the derivative is tiny (or 1 - tiny): one loss per point, L = gelu(x), so that the finite
// difference resolves it to full relative precision.
TEST(Gelu, GradcheckTails) {
  for (double x0 : kTailPoints) {
    double x = x0, y = 0, dx = 0;
    const double one = 1.0;
    gelu_backward<double>(&dx, &x, &one, 1);
    EXPECT_TRUE(gradcheck_ok(
        [&] {
          gelu_forward<double>(&y, &x, 1);
          return y;
        },
        {{"x=" + std::to_string(x0), &x, &dx, 1}}));
  }
}

TEST(Gelu, FloatMatchesDouble) {
  Rng rng(33);
  const auto x = random_normal<float>(rng, 1001, 3.0), dout = random_normal<float>(rng, 1001);
  std::vector<float> y(x.size()), dx(x.size());
  gelu_forward<float>(y.data(), x.data(), x.size());
  gelu_backward<float>(dx.data(), x.data(), dout.data(), x.size());
  const auto xd = cast_vec<double>(x), doutd = cast_vec<double>(dout);
  std::vector<double> yd(x.size()), dxd(x.size());
  gelu_forward<double>(yd.data(), xd.data(), x.size());
  gelu_backward<double>(dxd.data(), xd.data(), doutd.data(), x.size());
  EXPECT_LT(rel_l2(y, yd), 1e-6);
  EXPECT_LT(rel_l2(dx, dxd), 1e-6);
  for (std::size_t i = 0; i < x.size(); i++) EXPECT_NEAR(y[i], yd[i], 1e-6 * (1 + std::fabs(yd[i])));
}

TEST(Gelu, BackwardAccumulatesAndIsDeterministic) {
  Rng rng(34);
  const auto x = random_normal<float>(rng, 10007, 2.0), dout = random_normal<float>(rng, 10007);
  const auto init = random_normal<float>(rng, 10007);
  std::vector<float> once(x.size()), a = init, b = init;
  gelu_backward<float>(once.data(), x.data(), dout.data(), x.size());
  gelu_backward<float>(a.data(), x.data(), dout.data(), x.size());
  gelu_backward<float>(b.data(), x.data(), dout.data(), x.size());
  EXPECT_TRUE(bit_equal(a, b));
  // (the compiler may fuse the multiply-add, so allow an ulp or two)
  for (std::size_t i = 0; i < x.size(); i++) EXPECT_NEAR(a[i], init[i] + once[i], 3e-7f * (1 + std::fabs(a[i])));
  std::vector<float> y1(x.size()), y2(x.size());
  gelu_forward<float>(y1.data(), x.data(), x.size());
  gelu_forward<float>(y2.data(), x.data(), x.size());
  EXPECT_TRUE(bit_equal(y1, y2));
}

// The exact form against long double erf; torch's nn.GELU() at 1 is 0.8413447460685429 (= Phi(1)).
TEST(GeluErf, ForwardMatchesFormula) {
  auto x = bulk_points();
  x.insert(x.end(), kTailPoints.begin(), kTailPoints.end());
  std::vector<double> y(x.size());
  gelu_erf_forward<double>(y.data(), x.data(), x.size());
  for (std::size_t i = 0; i < x.size(); i++) {
    const long double u = x[i];
    const long double want = 0.5L * u * (1.0L + std::erf(u / std::sqrt(2.0L)));
    EXPECT_NEAR(y[i], static_cast<double>(want), 1e-15 * (1 + std::fabs(x[i]))) << x[i];
  }
  const double one = 1.0;
  double g1;
  gelu_erf_forward<double>(&g1, &one, 1);
  EXPECT_NEAR(g1, 0.8413447460685429, 1e-15);
  // differs from the tanh approximation by about 1.5e-4 at 1: the two forms are not interchangeable
  double t1;
  gelu_forward<double>(&t1, &one, 1);
  EXPECT_GT(std::fabs(g1 - t1), 1e-4);
}

TEST(GeluErf, Gradcheck) {
  auto x = bulk_points();
  Rng rng(35);
  const auto w = random_normal(rng, x.size());
  std::vector<double> y(x.size());
  auto loss = [&] {
    gelu_erf_forward<double>(y.data(), x.data(), x.size());
    return weighted_sum(w, y.data());
  };
  std::vector<double> dx(x.size());
  gelu_erf_backward<double>(dx.data(), x.data(), w.data(), x.size());
  EXPECT_TRUE(gradcheck_ok(loss, {{"inp", x.data(), dx.data(), x.size()}}));
}

TEST(GeluErf, GradcheckTails) {
  for (double x0 : kTailPoints) {
    double x = x0, y = 0, dx = 0;
    const double one = 1.0;
    gelu_erf_backward<double>(&dx, &x, &one, 1);
    EXPECT_TRUE(gradcheck_ok(
        [&] {
          gelu_erf_forward<double>(&y, &x, 1);
          return y;
        },
        {{"x=" + std::to_string(x0), &x, &dx, 1}}));
  }
}

TEST(GeluErf, FloatMatchesDoubleAndAccumulates) {
  Rng rng(36);
  const auto x = random_normal<float>(rng, 1001, 3.0), dout = random_normal<float>(rng, 1001);
  const auto init = random_normal<float>(rng, 1001);
  std::vector<float> y(x.size()), dx = init;
  gelu_erf_forward<float>(y.data(), x.data(), x.size());
  gelu_erf_backward<float>(dx.data(), x.data(), dout.data(), x.size());
  const auto xd = cast_vec<double>(x), doutd = cast_vec<double>(dout);
  std::vector<double> yd(x.size()), dxd = cast_vec<double>(init);
  gelu_erf_forward<double>(yd.data(), xd.data(), x.size());
  gelu_erf_backward<double>(dxd.data(), xd.data(), doutd.data(), x.size());
  for (std::size_t i = 0; i < x.size(); i++) {
    EXPECT_NEAR(y[i], yd[i], 1e-6 * (1 + std::fabs(yd[i])));
    EXPECT_NEAR(dx[i], dxd[i], 1e-6 * (1 + std::fabs(dxd[i])));
  }
}

}  // namespace
}  // namespace stretch::test
