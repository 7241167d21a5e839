// Self-tests of the finite-difference harness: it accepts a correct gradient and rejects wrong ones.
#include <cmath>
#include <vector>

#include "kernels/gradcheck.hpp"

namespace stretch::test {
namespace {

// L(x, y) = sum_i sin(x_i) * y_i^2 + x_0 * y_1
struct Toy {
  std::vector<double> x{0.3, -1.2, 2.0, 0.7}, y{1.5, -0.4, 0.9, 2.2};
  double loss() const {
    double s = x[0] * y[1];
    for (std::size_t i = 0; i < x.size(); i++) s += std::sin(x[i]) * y[i] * y[i];
    return s;
  }
  void grads(std::vector<double>& gx, std::vector<double>& gy) const {
    gx.assign(x.size(), 0.0);
    gy.assign(y.size(), 0.0);
    for (std::size_t i = 0; i < x.size(); i++) {
      gx[i] = std::cos(x[i]) * y[i] * y[i];
      gy[i] = 2.0 * std::sin(x[i]) * y[i];
    }
    gx[0] += y[1];
    gy[1] += x[0];
  }
};

TEST(GradCheck, AcceptsCorrectGradient) {
  Toy t;
  std::vector<double> gx, gy;
  t.grads(gx, gy);
  const auto x0 = t.x, y0 = t.y;
  const auto rep = gradcheck([&] { return t.loss(); }, {{"x", t.x.data(), gx.data(), 4}, {"y", t.y.data(), gy.data(), 4}});
  EXPECT_EQ(rep.checked, 8u);
  EXPECT_LT(rep.max_rel_err, 1e-8);
  EXPECT_EQ(t.x, x0);  // inputs restored exactly
  EXPECT_EQ(t.y, y0);
}

TEST(GradCheck, RejectsWrongGradient) {
  Toy t;
  std::vector<double> gx, gy;
  t.grads(gx, gy);
  gy[1] -= t.x[0];  // drop one term
  EXPECT_FALSE(gradcheck_ok([&] { return t.loss(); }, {{"x", t.x.data(), gx.data(), 4}, {"y", t.y.data(), gy.data(), 4}}));
  t.grads(gx, gy);
  gx[2] *= 1.001;  // a 0.1% error is caught too
  EXPECT_FALSE(gradcheck_ok([&] { return t.loss(); }, {{"x", t.x.data(), gx.data(), 4}}));
  t.grads(gx, gy);
  gx[3] = NAN;
  EXPECT_FALSE(gradcheck_ok([&] { return t.loss(); }, {{"x", t.x.data(), gx.data(), 4}}));
}

TEST(GradCheck, StridesLargeInputs) {
  std::vector<double> x(100, 1.0), g(100, 2.0);
  GradCheckOptions opt;
  opt.max_per_input = 10;
  const auto rep = gradcheck(
      [&] {
        double s = 0;
        for (double v : x) s += 2.0 * v;
        return s;
      },
      {{"x", x.data(), g.data(), x.size()}}, opt);
  EXPECT_EQ(rep.checked, 10u);
  EXPECT_LT(rep.max_rel_err, 1e-8);
}

}  // namespace
}  // namespace stretch::test
