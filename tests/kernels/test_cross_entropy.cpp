#include "kernels/cross_entropy.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.hpp"
#include "kernels/gradcheck.hpp"

namespace stretch::test {
namespace {

constexpr int N = 7, V = 11;
const std::vector<int> kTargets = {3, -1, 0, 10, -100, 3, 7};

long double ce_formula(const double* x, int v, int t) {
  long double m = x[0];
  for (int i = 1; i < v; i++) m = std::max<long double>(m, x[i]);
  long double s = 0;
  for (int i = 0; i < v; i++) s += std::exp(static_cast<long double>(x[i]) - m);
  return std::log(s) + m - x[t];
}

TEST(CrossEntropy, ForwardMatchesFormula) {
  Rng rng(51);
  const auto logits = random_normal(rng, N * V, 3.0);
  std::vector<double> losses(N, -7.0);
  cross_entropy_forward<double>(losses.data(), logits.data(), kTargets.data(), N, V);
  for (int n = 0; n < N; n++) {
    if (kTargets[n] < 0) {
      EXPECT_EQ(losses[n], 0.0);
    } else {
      EXPECT_NEAR(losses[n], static_cast<double>(ce_formula(&logits[n * V], V, kTargets[n])), 1e-13);
      EXPECT_GT(losses[n], 0.0);
    }
  }
  // uniform logits: loss = log V
  const std::vector<double> flat(V, 0.25);
  const int t = 4;
  double l;
  cross_entropy_forward<double>(&l, flat.data(), &t, 1, V);
  EXPECT_NEAR(l, std::log(double(V)), 1e-15);
}

TEST(CrossEntropy, LargeLogitsStayFinite) {
  // exp(500) overflows float (and exp(1000) double) without the max subtraction
  std::vector<float> logits = {500.0f, 498.0f, 1000.0f, 999.0f};
  const std::vector<int> t = {1, 0};
  std::vector<float> losses(2), dl(4);
  const std::vector<float> ones = {1.0f, 1.0f};
  cross_entropy_forward<float>(losses.data(), logits.data(), t.data(), 2, 2);
  const double l0 = std::log1p(std::exp(-2.0)) + 2.0, l1 = std::log1p(std::exp(-1.0));
  EXPECT_NEAR(losses[0], l0, 1e-6);
  EXPECT_NEAR(losses[1], l1, 1e-6);
  cross_entropy_backward<float>(dl.data(), logits.data(), t.data(), ones.data(), 2, 2);
  for (float g : dl) EXPECT_TRUE(std::isfinite(g));
  EXPECT_NEAR(dl[0], 1.0 / (1.0 + std::exp(-2.0)), 1e-6);
}

TEST(CrossEntropy, GradcheckWithIgnoredTargets) {
  Rng rng(52);
  // moderate logits and |w| >= 0.5 keep every gradient entry above ~1e-4, well inside what the FD resolves
  auto logits = random_normal(rng, N * V, 1.0);
  auto w = random_normal(rng, N);  // dlosses
  for (auto& x : w) x = x < 0 ? x - 0.5 : x + 0.5;
  std::vector<double> losses(N);
  auto loss = [&] {
    cross_entropy_forward<double>(losses.data(), logits.data(), kTargets.data(), N, V);
    return weighted_sum(w, losses.data());
  };
  std::vector<double> dlogits(N * V, 99.0);  // overwritten, not accumulated
  cross_entropy_backward<double>(dlogits.data(), logits.data(), kTargets.data(), w.data(), N, V);
  EXPECT_TRUE(gradcheck_ok(loss, {{"logits", logits.data(), dlogits.data(), logits.size()}}));
  for (int n = 0; n < N; n++) {
    double rowsum = 0;
    for (int i = 0; i < V; i++) rowsum += dlogits[n * V + i];
    EXPECT_NEAR(rowsum, 0.0, 1e-14);  // softmax - onehot sums to zero
    if (kTargets[n] < 0) {
      for (int i = 0; i < V; i++) EXPECT_EQ(dlogits[n * V + i], 0.0);
    }
  }
}

TEST(CrossEntropy, InPlaceEqualsOutOfPlace) {
  const int n = 37, v = 1031;
  Rng rng(53);
  auto logits = random_normal<float>(rng, n * v, 4.0);
  auto targets = random_ids(rng, n, v);
  targets[5] = -1;
  const auto dl = random_normal<float>(rng, n);
  std::vector<float> out(n * v);
  cross_entropy_backward<float>(out.data(), logits.data(), targets.data(), dl.data(), n, v);
  cross_entropy_backward<float>(logits.data(), logits.data(), targets.data(), dl.data(), n, v);
  EXPECT_TRUE(bit_equal(out, logits));
}

TEST(CrossEntropy, FloatMatchesDoubleAndDeterministic) {
  const int n = 64, v = 515;
  Rng rng(54);
  const auto logits = random_normal<float>(rng, n * v, 3.0);
  auto targets = random_ids(rng, n, v);
  targets[0] = -1;
  const auto dl = random_normal<float>(rng, n);
  std::vector<float> loss(n), loss2(n), g(n * v), g2(n * v);
  cross_entropy_forward<float>(loss.data(), logits.data(), targets.data(), n, v);
  cross_entropy_forward<float>(loss2.data(), logits.data(), targets.data(), n, v);
  cross_entropy_backward<float>(g.data(), logits.data(), targets.data(), dl.data(), n, v);
  cross_entropy_backward<float>(g2.data(), logits.data(), targets.data(), dl.data(), n, v);
  EXPECT_TRUE(bit_equal(loss, loss2));
  EXPECT_TRUE(bit_equal(g, g2));
  std::vector<double> lossd(n), gd(n * v);
  const auto logitsd = cast_vec<double>(logits), dld = cast_vec<double>(dl);
  cross_entropy_forward<double>(lossd.data(), logitsd.data(), targets.data(), n, v);
  cross_entropy_backward<double>(gd.data(), logitsd.data(), targets.data(), dld.data(), n, v);
  EXPECT_LT(rel_l2(loss, lossd), 1e-6);
  EXPECT_LT(rel_l2(g, gd), 1e-5);
}

TEST(CrossEntropy, TargetOutsideVocabularyThrows) {
  const std::vector<float> logits(6, 0.0f), dl(2, 1.0f);
  const std::vector<int> t = {0, 3};
  std::vector<float> losses(2), g(6);
  EXPECT_THROW(cross_entropy_forward<float>(losses.data(), logits.data(), t.data(), 2, 3), Error);
  EXPECT_THROW(cross_entropy_backward<float>(g.data(), logits.data(), t.data(), dl.data(), 2, 3), Error);
}

}  // namespace
}  // namespace stretch::test
