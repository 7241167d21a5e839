// kernels/matvec_bf16.hpp: against its plain reference and against oneDNN's bf16 product on the same operands (the
// same exact products, fp32 sums in another order), over 1 to 4 rows, widths that leave tails after 16 and 8, biases
// or none; the portable 8-wide path too; and a row count it does not take is refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "kernels/bf16.hpp"
#include "kernels/matmul.hpp"
#include "kernels/matvec_bf16.hpp"

namespace stretch {
namespace {

std::vector<bf16_t> random_bf16(Rng& rng, std::size_t n) {
  std::vector<float> f(n);
  for (auto& v : f) v = static_cast<float>(rng.normal());
  std::vector<bf16_t> b(n);
  to_bf16(b.data(), f.data(), n);
  return b;
}

TEST(MatvecBf16, MatchesTheReferenceAndOneDnn) {
  Rng rng(11);
  for (int N = 1; N <= kMatvecRows; N++)
    for (int C : {1, 7, 16, 37, 256, 2051})
      for (int OC : {1, 5, 16, 33, 300})
        for (bool bias : {false, true}) {
          const auto x = random_bf16(rng, static_cast<std::size_t>(N) * C);
          const auto W = random_bf16(rng, static_cast<std::size_t>(OC) * C);
          std::vector<float> b(OC);
          for (auto& v : b) v = static_cast<float>(rng.normal());
          std::vector<float> got(static_cast<std::size_t>(N) * OC), ref(got.size()), dnn(got.size()), port(got.size());
          const float* bp = bias ? b.data() : nullptr;
          matvec_bf16(got.data(), x.data(), W.data(), bp, N, C, OC);
          matvec_bf16_portable(port.data(), x.data(), W.data(), bp, N, C, OC);
          matvec_bf16_ref(ref.data(), x.data(), W.data(), bp, N, C, OC);
          matmul_forward_bf16(dnn.data(), x.data(), W.data(), bp, N, C, OC);
          for (std::size_t i = 0; i < got.size(); i++) {
            // each sum has C exact products of magnitude ~1: the orders differ by a few ulps of sqrt(C)-sized sums
            const double tol = 1e-5 * std::sqrt(static_cast<double>(C)) + 1e-6;
            ASSERT_NEAR(got[i], ref[i], tol) << N << " " << C << " " << OC << " " << i;
            ASSERT_NEAR(got[i], dnn[i], tol) << N << " " << C << " " << OC << " " << i;
            ASSERT_NEAR(port[i], ref[i], tol) << N << " " << C << " " << OC << " " << i;
          }
        }
}

TEST(MatvecBf16, RefusesRowCountsItDoesNotTake) {
  std::vector<bf16_t> x(8 * 4), W(8 * 4);
  std::vector<float> out(8 * 8);
  EXPECT_THROW(matvec_bf16(out.data(), x.data(), W.data(), nullptr, 0, 8, 4), ConfigError);
  EXPECT_THROW(matvec_bf16(out.data(), x.data(), W.data(), nullptr, kMatvecRows + 1, 8, 4), ConfigError);
}

}  // namespace
}  // namespace stretch
