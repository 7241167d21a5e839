#include "kernels/adamw.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace stretch::test {
namespace {

// AdamW in double, straight from the formula in adamw.hpp.
void adamw_ref(std::vector<double>& p, const std::vector<double>& g, std::vector<double>& m, std::vector<double>& v,
               const AdamWStep& s) {
  const double b1 = s.beta1, b2 = s.beta2;
  for (std::size_t i = 0; i < p.size(); i++) {
    m[i] = b1 * m[i] + (1 - b1) * g[i];
    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
    const double mhat = m[i] / (1 - std::pow(b1, double(s.t)));
    const double vhat = v[i] / (1 - std::pow(b2, double(s.t)));
    p[i] -= double(s.lr) * (mhat / (std::sqrt(vhat) + double(s.eps)) + double(s.weight_decay) * p[i]);
  }
}

void check_three_steps(float wd) {
  SCOPED_TRACE(::testing::Message() << "weight_decay=" << wd);
  const std::vector<float> p0 = {1.0f, -0.5f, 0.25f, 3.0f, 0.0f, -2.0f};
  // per step gradients: includes a zero, a sign flip and a large value
  const std::vector<std::vector<float>> grads = {{0.5f, -0.1f, 0.0f, 10.0f, 1e-3f, -2.0f},
                                                 {0.4f, 0.2f, 0.0f, -10.0f, 1e-3f, -1.0f},
                                                 {-0.3f, 0.1f, 0.0f, 5.0f, -1e-3f, 0.5f}};
  std::vector<float> p = p0, m(p.size()), v(p.size());
  std::vector<double> pd(p0.begin(), p0.end()), md(p.size()), vd(p.size());
  AdamWStep s;
  s.lr = 0.01f;
  s.weight_decay = wd;
  for (long t = 1; t <= 3; t++) {
    s.t = t;
    adamw_update(p.data(), grads[t - 1].data(), m.data(), v.data(), p.size(), s);
    adamw_ref(pd, std::vector<double>(grads[t - 1].begin(), grads[t - 1].end()), md, vd, s);
    for (std::size_t i = 0; i < p.size(); i++) {
      EXPECT_NEAR(p[i], pd[i], 1e-6 * (1 + std::fabs(pd[i]))) << "step " << t << " i " << i;
      EXPECT_NEAR(m[i], md[i], 1e-6 * (1e-3 + std::fabs(md[i]))) << "step " << t << " i " << i;
      EXPECT_NEAR(v[i], vd[i], 1e-6 * (1e-6 + std::fabs(vd[i]))) << "step " << t << " i " << i;
    }
  }
  // sanity of the reference itself: the first step of Adam moves by ~lr * sign(g) (plus decay)
  std::vector<double> q(p0.begin(), p0.end()), mq(p.size()), vq(p.size());
  s.t = 1;
  adamw_ref(q, std::vector<double>(grads[0].begin(), grads[0].end()), mq, vq, s);
  const double lr = s.lr, dwd = wd;
  EXPECT_NEAR(q[0], 1.0 - lr - lr * dwd * 1.0, 1e-8);
  EXPECT_NEAR(q[1], -0.5 + lr - lr * dwd * -0.5, 1e-8);
  EXPECT_NEAR(q[2], 0.25 - lr * dwd * 0.25, 1e-15);  // zero gradient: only decay
}

TEST(AdamW, MatchesReferenceNoWeightDecay) { check_three_steps(0.0f); }
TEST(AdamW, MatchesReferenceWithWeightDecay) { check_three_steps(0.1f); }

TEST(AdamW, WeightDecayIsDecoupled) {
  // with a zero gradient the moments stay zero and the update is exactly p -= lr * wd * p
  std::vector<float> p = {2.0f, -4.0f}, g = {0.0f, 0.0f}, m(2), v(2);
  AdamWStep s;
  s.lr = 0.5f;
  s.weight_decay = 0.1f;
  adamw_update(p.data(), g.data(), m.data(), v.data(), 2, s);
  EXPECT_FLOAT_EQ(p[0], 2.0f - 0.5f * 0.1f * 2.0f);
  EXPECT_FLOAT_EQ(p[1], -4.0f + 0.5f * 0.1f * 4.0f);
  EXPECT_EQ(m[0], 0.0f);
  EXPECT_EQ(v[1], 0.0f);
}

}  // namespace
}  // namespace stretch::test
