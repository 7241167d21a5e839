// T5 relative-position buckets and the gradient reduction (position/t5.hpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "position/t5.hpp"

namespace stretch {
namespace {

TEST(T5Bucket, ExactRangeAndCaps) {
  for (int n = 0; n < 16; n++) EXPECT_EQ(t5_bucket(n), n);
  EXPECT_EQ(t5_bucket(16), 16);
  EXPECT_EQ(t5_bucket(127), 31);  // 16 + floor(15.94)
  for (int n : {128, 129, 500, 16384, 1 << 30}) EXPECT_EQ(t5_bucket(n), 31) << n;
  for (int n : {-1, -7, -100000}) EXPECT_EQ(t5_bucket(n), 0) << n;  // causal: a negative distance counts as 0
}

TEST(T5Bucket, HandComputedValues) {
  // 16 + floor(16 log(n/16) / log 8):
  EXPECT_EQ(t5_bucket(17), 16);   // 16 * 0.0606 / 2.0794 = 0.47
  EXPECT_EQ(t5_bucket(20), 17);   // 16 * 0.2231 / 2.0794 = 1.72
  EXPECT_EQ(t5_bucket(32), 21);   // 16/3 = 5.33
  EXPECT_EQ(t5_bucket(64), 26);   // 32/3 = 10.67
  EXPECT_EQ(t5_bucket(100), 30);  // 16 * 1.8326 / 2.0794 = 14.10
  EXPECT_EQ(t5_bucket(112), 30);  // 14.97
  EXPECT_EQ(t5_bucket(113), 31);  // 15.02
}

TEST(T5Bucket, MatchesFormulaInDoubleAndFloatAndIsMonotone) {
  int prev = 0;
  for (int n = 0; n < 2000; n++) {
    int ref = n, ref_f = n;
    if (n >= 16) {
      ref = std::min(31, 16 + static_cast<int>(std::floor(std::log(n / 16.0) / std::log(8.0) * 16.0)));
      // PyTorch/HF style: log of a float32 tensor, divided by a double constant, in float32
      const float v = std::log(static_cast<float>(n) / 16.0f) / static_cast<float>(std::log(8.0)) * 16.0f;
      ref_f = std::min(31, 16 + static_cast<int>(v));
    }
    const int b = t5_bucket(n);
    EXPECT_EQ(b, ref) << n;
    EXPECT_EQ(b, ref_f) << n;
    EXPECT_GE(b, prev) << n;
    EXPECT_LT(b, kT5Buckets);
    prev = b;
  }
}

TEST(T5Bias, FunctorReadsTableAndAccumulatesPerBH) {
  const int NH = 3, B = 2;
  std::vector<double> table(kT5Buckets * NH);
  for (std::size_t i = 0; i < table.size(); i++) table[i] = 0.5 * static_cast<double>(i);
  std::vector<double> partial(B * NH * kT5Buckets, 0.0);
  T5Bias<double> t{table.data(), partial.data(), NH};
  EXPECT_EQ(t(2, 40, 10), table[t5_bucket(30) * NH + 2]);
  EXPECT_EQ(t.operator()<float>(1, 5, 5), static_cast<float>(table[1]));
  t.accumulate(1, 2, 40, 10, 1.5);
  t.accumulate(1, 2, 41, 11, 0.25);
  EXPECT_EQ(partial[(1 * NH + 2) * kT5Buckets + t5_bucket(30)], 1.75);
}

TEST(T5Bias, ReduceGradSumsOverBatchAndAccumulates) {
  const int NH = 2, B = 3;
  std::vector<float> partial(B * NH * kT5Buckets);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int k = 0; k < kT5Buckets; k++) partial[(b * NH + h) * kT5Buckets + k] = float(100 * b + 10 * h + k);
  std::vector<float> dtable(kT5Buckets * NH, 1.0f);
  t5_reduce_grad(dtable.data(), partial.data(), B, NH);
  for (int k = 0; k < kT5Buckets; k++)
    for (int h = 0; h < NH; h++) EXPECT_EQ(dtable[k * NH + h], 1.0f + 300.0f + 30.0f * h + 3.0f * k);
}

}  // namespace
}  // namespace stretch
