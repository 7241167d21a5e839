// Sampling: greedy is argmax, the seeded sampler reproduces itself and follows softmax(logits / T) (checked by
// frequencies), top-k and top-p never pick outside their sets, and out-of-range parameters are refused by name.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "core/error.hpp"
#include "run/sampler.hpp"

namespace stretch {
namespace {

const std::vector<float> kLogits = {0.5f, 2.0f, -1.0f, 1.0f, 1.9f, -3.0f};

TEST(Sampler, TemperatureZeroIsArgmax) {
  SamplingOptions o;
  o.temperature = 0;
  Sampler s(o);
  for (int i = 0; i < 10; i++) EXPECT_EQ(s.next(kLogits.data(), 6), 1);
}

TEST(Sampler, FrequenciesFollowTheTemperedSoftmax) {
  for (double temp : {0.5, 1.0, 2.0}) {
    SamplingOptions o;
    o.temperature = temp;
    o.top_p = 1.0;
    o.seed = 7;
    Sampler s(o);
    const int n = 200000;
    std::vector<int> count(6, 0);
    for (int i = 0; i < n; i++) count[s.next(kLogits.data(), 6)]++;
    double z = 0;
    for (float l : kLogits) z += std::exp(l / temp);
    for (int i = 0; i < 6; i++) {
      const double p = std::exp(kLogits[i] / temp) / z;
      const double sd = std::sqrt(p * (1 - p) / n);
      EXPECT_NEAR(count[i] / static_cast<double>(n), p, 5 * sd + 1e-6) << "token " << i << " at T=" << temp;
    }
  }
}

TEST(Sampler, SameSeedSameSequence) {
  SamplingOptions o;
  o.seed = 11;
  Sampler a(o), b(o);
  o.seed = 12;
  Sampler c(o);
  int differ = 0;
  for (int i = 0; i < 100; i++) {
    const int x = a.next(kLogits.data(), 6);
    EXPECT_EQ(x, b.next(kLogits.data(), 6));
    differ += x != c.next(kLogits.data(), 6);
  }
  EXPECT_GT(differ, 0);
}

TEST(Sampler, TopKAndTopPStayInsideTheirSets) {
  SamplingOptions o;
  o.temperature = 5.0;  // nearly uniform, so the restriction is what keeps the tail out
  o.top_k = 2;
  o.top_p = 1.0;
  Sampler k2(o);
  for (int i = 0; i < 2000; i++) {
    const int x = k2.next(kLogits.data(), 6);
    EXPECT_TRUE(x == 1 || x == 4) << x;
  }
  o.temperature = 1.0;
  o.top_k = 0;
  o.top_p = 0.5;  // p = 0.36 (id 1) + 0.33 (id 4) reaches 0.5 with two tokens
  Sampler p5(o);
  std::map<int, int> seen;
  for (int i = 0; i < 2000; i++) seen[p5.next(kLogits.data(), 6)]++;
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_GT(seen[1], 0);
  EXPECT_GT(seen[4], 0);
}

TEST(Sampler, OutOfRangeParametersAreRefusedByName) {
  auto refused = [](SamplingOptions o, const char* flag) {
    try {
      o.validate();
      ADD_FAILURE() << flag << " accepted";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(flag), std::string::npos) << e.what();
    }
  };
  SamplingOptions o;
  o.temperature = -0.1;
  refused(o, "`temperature`");
  o = {};
  o.temperature = NAN;
  refused(o, "`temperature`");
  o = {};
  o.top_k = -1;
  refused(o, "`top_k`");
  o = {};
  o.top_p = 0.0;
  refused(o, "`top_p`");
  o = {};
  o.top_p = 1.5;
  refused(o, "`top_p`");
}

}  // namespace
}  // namespace stretch
