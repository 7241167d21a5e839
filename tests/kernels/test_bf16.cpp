// bfloat16 conversion (kernels/bf16.hpp) and the bf16 products of kernels/matmul.hpp: the vector conversion equal to
// the scalar one (core/numeric.hpp, tested in tests/core/test_numeric.cpp) bit for bit, oneDNN's bf16 gemm against the
// plain loops on the same bf16 values (every transpose, alpha, beta, strides, odd shapes), and the bf16 Linear
// layer's forward and backward against the fp32 reference run on the widened values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/rng.hpp"
#include "kernels/bf16.hpp"
#include "kernels/matmul.hpp"

namespace stretch {
namespace {

float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

TEST(Bf16, VectorConversionEqualsScalarBitForBit) {
  Rng rng(3);
  std::vector<float> x(100003);
  for (std::size_t i = 0; i < x.size(); i++) {
    const std::uint32_t u = static_cast<std::uint32_t>(rng.below(1u << 31)) * 2u + static_cast<std::uint32_t>(i & 1);
    x[i] = i % 3 ? rng.normal() * 100.0f : from_bits(u);  // every bit pattern class, NaNs and denormals included
  }
  // and the edges, each at a vector lane: exact ties (even and odd mantissa, both signs), the values beside them,
  // the largest finite floats (round to inf), subnormals, NaNs whose payload lies only in the dropped half
  const std::uint32_t edges[] = {0x3F808000u, 0x3F818000u, 0xBF808000u, 0xBF818000u, 0x3F807FFFu, 0x3F808001u,
                                 0x7F7FFFFFu, 0xFF7F8000u, 0x7F7F7FFFu, 0x00000001u, 0x807FFFFFu, 0x00400000u,
                                 0x7F800001u, 0xFF800001u, 0x7FC00000u, 0x7F800000u, 0xFF800000u, 0x80000000u,
                                 0x00800000u, 0x00FF8000u};
  for (std::size_t k = 0; k < std::size(edges); k++) x[1000 + 7 * k] = from_bits(edges[k]);
  std::vector<bf16_t> v(x.size());
  to_bf16(v.data(), x.data(), x.size());
  for (std::size_t i = 0; i < x.size(); i++) ASSERT_EQ(v[i], float_to_bf16(x[i])) << i << " " << x[i];
}

std::vector<bf16_t> random_bf16(Rng& rng, std::size_t n) {
  std::vector<bf16_t> v(n);
  for (auto& h : v) h = float_to_bf16(rng.normal());
  return v;
}

double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); i++) {
    num = std::max(num, std::fabs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::fabs(static_cast<double>(b[i])));
  }
  return den > 0 ? num / den : num;
}

TEST(Bf16, GemmMatchesPlainLoops) {
  Rng rng(5);
  int cases = 0;
  for (char ta : {'N', 'T'})
    for (char tb : {'N', 'T'})
      for (long M : {1L, 17L, 64L})
        for (long N : {3L, 40L})
          for (long K : {1L, 33L, 256L}) {
            const long pad = 5;  // strides larger than the rows
            const long lda = (ta == 'T' ? M : K) + pad, ldb = (tb == 'T' ? K : N) + pad, ldc = N + pad;
            const auto A = random_bf16(rng, static_cast<std::size_t>((ta == 'T' ? K : M) * lda));
            const auto B = random_bf16(rng, static_cast<std::size_t>((tb == 'T' ? N : K) * ldb));
            std::vector<float> C0(static_cast<std::size_t>(M * ldc));
            for (auto& c : C0) c = rng.normal();
            for (float beta : {0.0f, 1.0f, 0.5f}) {
              const float alpha = cases % 2 ? 1.0f : 0.75f;
              std::vector<float> c1 = C0, c2 = C0;
              gemm_bf16(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, c1.data(), ldc);
              gemm_bf16_ref(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, c2.data(), ldc);
              EXPECT_LT(rel_diff(c1, c2), 1e-5) << ta << tb << " M=" << M << " N=" << N << " K=" << K
                                                << " beta=" << beta;
              cases++;
            }
          }
  EXPECT_EQ(cases, 4 * 3 * 2 * 3 * 3);
}

TEST(Bf16, LinearLayerMatchesTheFp32ReferenceOnWidenedValues) {
  const int N = 37, C = 48, OC = 29;
  Rng rng(9);
  const auto inp = random_bf16(rng, static_cast<std::size_t>(N) * C);
  const auto w = random_bf16(rng, static_cast<std::size_t>(OC) * C);
  std::vector<float> bias(OC), dout(static_cast<std::size_t>(N) * OC);
  for (auto& b : bias) b = rng.normal();
  for (auto& d : dout) d = bf16_to_float(float_to_bf16(rng.normal()));  // exactly representable
  std::vector<bf16_t> dout_bf(dout.size());
  to_bf16(dout_bf.data(), dout.data(), dout.size());
  std::vector<float> inpf(inp.size()), wf(w.size());
  for (std::size_t i = 0; i < inp.size(); i++) inpf[i] = bf16_to_float(inp[i]);
  for (std::size_t i = 0; i < w.size(); i++) wf[i] = bf16_to_float(w[i]);

  std::vector<float> out(static_cast<std::size_t>(N) * OC), ref(out.size());
  matmul_forward_bf16(out.data(), inp.data(), w.data(), bias.data(), N, C, OC);
  matmul_forward_ref<float>(ref.data(), inpf.data(), wf.data(), bias.data(), N, C, OC);
  EXPECT_LT(rel_diff(out, ref), 1e-5);

  std::vector<float> dinp(inp.size(), 0.5f), dw(w.size(), -0.25f), db(OC, 1.0f);
  std::vector<float> rdinp = dinp, rdw = dw, rdb = db;
  matmul_backward_bf16(dinp.data(), dw.data(), db.data(), dout.data(), dout_bf.data(), inp.data(), w.data(), N, C, OC);
  matmul_backward_ref<float>(rdinp.data(), rdw.data(), rdb.data(), dout.data(), inpf.data(), wf.data(), N, C, OC);
  EXPECT_LT(rel_diff(dinp, rdinp), 1e-5);
  EXPECT_LT(rel_diff(dw, rdw), 1e-5);
  EXPECT_LT(rel_diff(db, rdb), 1e-6);
}

}  // namespace
}  // namespace stretch
