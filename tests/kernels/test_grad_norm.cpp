// kernels/grad_norm: the sum of squares against a long-double loop (and its finiteness exactly when every value is
// finite), scaling, and the non-finite count against std::isfinite.
#include <gtest/gtest.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/rng.hpp"
#include "kernels/grad_norm.hpp"

namespace stretch {
namespace {

std::vector<float> random_values(std::size_t n, std::uint64_t seed, float spread) {
  Rng rng(seed);
  std::vector<float> x(n);
  for (auto& v : x) v = spread * static_cast<float>(rng.normal());
  return x;
}

TEST(GradNorm, SumOfSquaresMatchesALongDoubleLoop) {
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{4099}, std::size_t{1} << 20}) {
    const auto x = random_values(n, 11 + n, 3.0f);
    long double ref = 0;
    for (float v : x) ref += static_cast<long double>(v) * v;
    const double got = sum_of_squares(x.data(), n);
    EXPECT_NEAR(got, static_cast<double>(ref), 1e-12 * static_cast<double>(ref) + 1e-300) << n;
  }
}

// The documented order (blocks of 32768 in 8 interleaved accumulators), written out plainly: bit for bit, and the
// same on one thread as on two (the order does not depend on the thread count).
TEST(GradNorm, SumOfSquaresFollowsItsFixedOrderOnAnyThreadCount) {
  for (std::size_t n : {std::size_t{13}, std::size_t{32768 * 3 + 5}, std::size_t{32768 * 40 + 77}}) {
    const auto x = random_values(n, 5 + n, 1e-3f);
    double total = 0.0;
    for (std::size_t b0 = 0; b0 < n; b0 += 32768) {
      double acc[8] = {};
      for (std::size_t i = b0; i < std::min(n, b0 + 32768); i++) acc[(i - b0) % 8] += static_cast<double>(x[i]) * x[i];
      total += ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    }
    EXPECT_EQ(sum_of_squares(x.data(), n), total) << n;
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const double one = sum_of_squares(x.data(), n);
    omp_set_num_threads(2);
    const double two = sum_of_squares(x.data(), n);
    omp_set_num_threads(threads);
    EXPECT_EQ(one, total) << n;
    EXPECT_EQ(two, total) << n;
  }
}

TEST(GradNorm, SumOfSquaresIsFiniteExactlyWhenEveryValueIs) {
  const float big = std::numeric_limits<float>::max();
  std::vector<float> x(1 << 16, big);  // 65536 squares of FLT_MAX: 7.5e81, far inside double range
  EXPECT_TRUE(std::isfinite(sum_of_squares(x.data(), x.size())));
  for (float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN()}) {
    auto y = x;
    y[12345] = bad;
    EXPECT_FALSE(std::isfinite(sum_of_squares(y.data(), y.size()))) << bad;
  }
}

TEST(GradNorm, ScaleMultipliesEveryValue) {
  auto x = random_values(1001, 3, 1.0f);
  const auto before = x;
  scale(x.data(), x.size(), 0.25f);
  for (std::size_t i = 0; i < x.size(); i++) EXPECT_EQ(x[i], before[i] * 0.25f);
  scale(x.data(), 0, 0.0f);  // n = 0 touches nothing
  EXPECT_EQ(x[0], before[0] * 0.25f);
}

TEST(GradNorm, CountNonfiniteFindsNaNAndInfOnly) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x(5000, 1.0f);
  x[0] = std::numeric_limits<float>::quiet_NaN();
  x[17] = inf;
  x[4999] = -inf;
  x[100] = std::numeric_limits<float>::max();
  x[101] = std::numeric_limits<float>::denorm_min();
  x[102] = -0.0f;
  EXPECT_EQ(count_nonfinite(x.data(), x.size()), 3u);
  EXPECT_EQ(count_nonfinite(x.data() + 1, 16), 0u);
  std::size_t ref = 0;
  for (float v : x) ref += !std::isfinite(v);
  EXPECT_EQ(count_nonfinite(x.data(), x.size()), ref);
  // past the threshold where the count runs on threads
  std::vector<float> big((std::size_t{1} << 26) + 3, 0.5f);
  big[123456] = -std::numeric_limits<float>::quiet_NaN();
  big.back() = inf;
  EXPECT_EQ(count_nonfinite(big.data(), big.size()), 2u);
}

}  // namespace
}  // namespace stretch
