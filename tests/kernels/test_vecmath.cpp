// The vectorizable exp/tanh against the library's, over the ranges the kernels use.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/vecmath.hpp"

namespace stretch {
namespace {

TEST(VecMath, ExpMatchesTheLibraryWithin2e7Relative) {
  double worst = 0;
  for (double x = -87.0; x <= 88.0; x += 0.000731) {
    const float xf = static_cast<float>(x);
    const double ref = std::exp(static_cast<double>(xf));
    worst = std::max(worst, std::abs(exp_fast(xf) - ref) / ref);
  }
  EXPECT_LT(worst, 2e-7);
  EXPECT_EQ(exp_fast(0.0f), 1.0f);
  EXPECT_LT(exp_fast(-1000.0f), 1.2e-38f);  // clamped underflow
  EXPECT_TRUE(std::isfinite(exp_fast(1000.0f)));
}

TEST(VecMath, TanhMatchesTheLibraryWithin3e7Absolute) {
  double worst = 0;
  for (double x = -20.0; x <= 20.0; x += 0.0001237) {
    const float xf = static_cast<float>(x);
    worst = std::max(worst, std::abs(tanh_fast(xf) - std::tanh(static_cast<double>(xf))));
  }
  EXPECT_LT(worst, 3e-7);
  EXPECT_EQ(tanh_fast(100.0f), 1.0f);
  EXPECT_EQ(tanh_fast(-100.0f), -1.0f);
}

}  // namespace
}  // namespace stretch
