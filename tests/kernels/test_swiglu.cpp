#include "kernels/swiglu.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/gradcheck.hpp"

namespace stretch::test {
namespace {

long double silu_formula(long double g) { return g / (1.0L + std::exp(-g)); }

TEST(SwiGlu, ForwardMatchesFormula) {
  const std::size_t n = 5;
  const int fh = 11;  // odd
  Rng rng(61);
  auto inp = random_normal(rng, n * 2 * fh, 2.0);
  inp[0] = 0.0, inp[1] = 30.0, inp[2] = -30.0, inp[3] = -800.0, inp[4] = 800.0;  // exp overflow guards
  std::vector<double> out(n * fh);
  swiglu_forward<double>(out.data(), inp.data(), n, fh);
  for (std::size_t r = 0; r < n; r++) {
    for (int i = 0; i < fh; i++) {
      const double g = inp[r * 2 * fh + i], u = inp[r * 2 * fh + fh + i];
      const long double y = silu_formula(g) * u;
      EXPECT_NEAR(out[r * fh + i], static_cast<double>(y), 1e-15 * (1 + std::fabs(static_cast<double>(y))))
          << r << " " << i;
      EXPECT_TRUE(std::isfinite(out[r * fh + i]));
    }
  }
  // torch.nn.functional.silu(1.0) = 0.7310585786300049
  const double x[2] = {1.0, 1.0};
  double y;
  swiglu_forward<double>(&y, x, 1, 1);
  EXPECT_NEAR(y, 0.7310585786300049, 1e-16);
}

void fd_swiglu(std::size_t n, int fh, std::uint64_t seed, double scale) {
  Rng rng(seed);
  auto inp = random_normal(rng, n * 2 * fh, scale);
  const auto w = random_normal(rng, n * fh);
  auto loss = [&] {
    std::vector<double> o(n * fh);
    swiglu_forward<double>(o.data(), inp.data(), n, fh);
    return weighted_sum(w, o.data());
  };
  std::vector<double> dinp(inp.size());
  swiglu_backward<double>(dinp.data(), inp.data(), w.data(), n, fh);
  EXPECT_TRUE(gradcheck_ok(loss, {{"inp", inp.data(), dinp.data(), inp.size()}}));
}

TEST(SwiGlu, Gradcheck) { fd_swiglu(7, 13, 62, 1.5); }
TEST(SwiGlu, GradcheckOddShapes) {
  fd_swiglu(1, 1, 63, 1.0);
  fd_swiglu(3, 2, 64, 2.0);
  fd_swiglu(2, 41, 65, 1.0);
}

// Saturated gates, one loss per element so the finite difference resolves small gradients.
TEST(SwiGlu, GradcheckTails) {
  for (double g0 : {-12.0, -6.0, -3.0, 3.0, 6.0, 12.0, 0.0}) {
    double x[2] = {g0, 0.7}, dx[2] = {0.0, 0.0}, y = 0;
    const double one = 1.0;
    swiglu_backward<double>(dx, x, &one, 1, 1);
    EXPECT_TRUE(gradcheck_ok(
        [&] {
          swiglu_forward<double>(&y, x, 1, 1);
          return y;
        },
        {{"g=" + std::to_string(g0), x, dx, 2}}));
  }
}

TEST(SwiGlu, FloatMatchesDouble) {
  const std::size_t n = 17;
  const int fh = 59;
  Rng rng(66);
  const auto x = random_normal<float>(rng, n * 2 * fh, 3.0), dout = random_normal<float>(rng, n * fh);
  std::vector<float> y(n * fh), dx(x.size());
  swiglu_forward<float>(y.data(), x.data(), n, fh);
  swiglu_backward<float>(dx.data(), x.data(), dout.data(), n, fh);
  const auto xd = cast_vec<double>(x), doutd = cast_vec<double>(dout);
  std::vector<double> yd(n * fh), dxd(x.size());
  swiglu_forward<double>(yd.data(), xd.data(), n, fh);
  swiglu_backward<double>(dxd.data(), xd.data(), doutd.data(), n, fh);
  EXPECT_LT(rel_l2(y, yd), 1e-6);
  EXPECT_LT(rel_l2(dx, dxd), 1e-6);
  for (std::size_t i = 0; i < y.size(); i++) EXPECT_NEAR(y[i], yd[i], 1e-6 * (1 + std::fabs(yd[i])));
}

TEST(SwiGlu, BackwardAccumulatesAndIsDeterministic) {
  const std::size_t n = 101;
  const int fh = 37;
  Rng rng(67);
  const auto x = random_normal<float>(rng, n * 2 * fh, 2.0), dout = random_normal<float>(rng, n * fh);
  const auto init = random_normal<float>(rng, x.size());
  std::vector<float> once(x.size()), a = init, b = init;
  swiglu_backward<float>(once.data(), x.data(), dout.data(), n, fh);
  swiglu_backward<float>(a.data(), x.data(), dout.data(), n, fh);
  swiglu_backward<float>(b.data(), x.data(), dout.data(), n, fh);
  EXPECT_TRUE(bit_equal(a, b));
  for (std::size_t i = 0; i < x.size(); i++) EXPECT_NEAR(a[i], init[i] + once[i], 3e-7f * (1 + std::fabs(a[i])));
  std::vector<float> y1(n * fh), y2(n * fh);
  swiglu_forward<float>(y1.data(), x.data(), n, fh);
  swiglu_forward<float>(y2.data(), x.data(), n, fh);
  EXPECT_TRUE(bit_equal(y1, y2));
}

}  // namespace
}  // namespace stretch::test
