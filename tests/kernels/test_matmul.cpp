#include "kernels/matmul.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "core/error.hpp"
#include "kernels/gradcheck.hpp"

namespace stretch::test {
namespace {

// ----- reference vs finite differences (double) -----

void fd_matmul_ref(bool with_bias) {
  const int N = 7, C = 13, OC = 5;
  Rng rng(11);
  auto inp = random_normal(rng, N * C);
  auto weight = random_normal(rng, OC * C, 0.5);
  auto bias = random_normal(rng, OC);
  const auto w = random_normal(rng, N * OC);
  std::vector<double> out(N * OC);
  const double* b = with_bias ? bias.data() : nullptr;
  auto loss = [&] {
    matmul_forward_ref<double>(out.data(), inp.data(), weight.data(), b, N, C, OC);
    return weighted_sum(w, out.data());
  };
  std::vector<double> dinp(N * C), dweight(OC * C), dbias(OC);
  matmul_backward_ref<double>(dinp.data(), dweight.data(), with_bias ? dbias.data() : nullptr, w.data(), inp.data(),
                              weight.data(), N, C, OC);
  std::vector<GradArg> args = {{"inp", inp.data(), dinp.data(), inp.size()},
                               {"weight", weight.data(), dweight.data(), weight.size()}};
  if (with_bias) args.push_back({"bias", bias.data(), dbias.data(), bias.size()});
  EXPECT_TRUE(gradcheck_ok(loss, args));
}

TEST(Matmul, RefGradcheckWithBias) { fd_matmul_ref(true); }
TEST(Matmul, RefGradcheckNoBias) { fd_matmul_ref(false); }

TEST(Matmul, RefForwardHandComputed) {
  // inp (2, 3), weight (2, 3), bias (2)
  const std::vector<double> inp = {1, 2, 3, -1, 0, 2}, weight = {1, 0, -1, 0.5, 0.5, 0.5}, bias = {10, -10};
  std::vector<double> out(4);
  matmul_forward_ref<double>(out.data(), inp.data(), weight.data(), bias.data(), 2, 3, 2);
  EXPECT_EQ(out, (std::vector<double>{10 - 2, -10 + 3, 10 - 3, -10 + 0.5}));
  matmul_forward_ref<double>(out.data(), inp.data(), weight.data(), nullptr, 2, 3, 2);
  EXPECT_EQ(out, (std::vector<double>{-2, 3, -3, 0.5}));
}

// ----- oneDNN vs reference (float) -----

struct Shape {
  int N, C, OC;
};

void compare_with_ref(Shape s, bool with_bias, bool with_dinp) {
  SCOPED_TRACE(::testing::Message() << "N=" << s.N << " C=" << s.C << " OC=" << s.OC << " bias=" << with_bias
                                    << " dinp=" << with_dinp);
  const int N = s.N, C = s.C, OC = s.OC;
  Rng rng(1234 + N + C + OC);
  const auto inp = random_normal<float>(rng, std::size_t(N) * C);
  const auto weight = random_normal<float>(rng, std::size_t(OC) * C, 0.1);
  const auto bias = random_normal<float>(rng, OC);
  const auto dout = random_normal<float>(rng, std::size_t(N) * OC);
  const float* b = with_bias ? bias.data() : nullptr;

  std::vector<float> out(std::size_t(N) * OC, 123.0f), out_ref(std::size_t(N) * OC);
  matmul_forward(out.data(), inp.data(), weight.data(), b, N, C, OC);
  matmul_forward_ref<float>(out_ref.data(), inp.data(), weight.data(), b, N, C, OC);
  EXPECT_LT(rel_l2(out, out_ref), 1e-5);

  // start from non-zero gradients to check that both accumulate
  const auto dinp0 = random_normal<float>(rng, std::size_t(N) * C);
  const auto dweight0 = random_normal<float>(rng, std::size_t(OC) * C);
  const auto dbias0 = random_normal<float>(rng, OC);
  auto dinp = dinp0, dweight = dweight0, dbias = dbias0;
  auto dinp_r = dinp0, dweight_r = dweight0, dbias_r = dbias0;
  matmul_backward(with_dinp ? dinp.data() : nullptr, dweight.data(), with_bias ? dbias.data() : nullptr, dout.data(),
                  inp.data(), weight.data(), N, C, OC);
  matmul_backward_ref<float>(with_dinp ? dinp_r.data() : nullptr, dweight_r.data(),
                             with_bias ? dbias_r.data() : nullptr, dout.data(), inp.data(), weight.data(), N, C, OC);
  EXPECT_LT(rel_l2(dinp, dinp_r), 1e-5);
  EXPECT_LT(rel_l2(dweight, dweight_r), 1e-5);
  EXPECT_LT(rel_l2(dbias, dbias_r), 1e-5);
  if (!with_dinp) {
    EXPECT_TRUE(bit_equal(dinp, dinp0));
  }
  if (!with_bias) {
    EXPECT_TRUE(bit_equal(dbias, dbias0));
  }
  // the accumulated part is what the kernels added: compare the increments, not just the sums
  std::vector<float> inc(dweight.size()), inc_r(dweight.size());
  for (std::size_t i = 0; i < inc.size(); i++) {
    inc[i] = dweight[i] - dweight0[i];
    inc_r[i] = dweight_r[i] - dweight0[i];
  }
  EXPECT_LT(rel_l2(inc, inc_r), 1e-4);
}

TEST(Matmul, OnednnMatchesRefOddShapes) {
  for (Shape s : {Shape{7, 13, 5}, Shape{1, 1, 1}, Shape{1, 17, 3}, Shape{33, 9, 65}, Shape{5, 130, 7}}) {
    for (bool bias : {true, false}) {
      for (bool dinp : {true, false}) compare_with_ref(s, bias, dinp);
    }
  }
}

TEST(Matmul, OnednnMatchesRefTransformerShape) {
  compare_with_ref({512, 256, 768}, true, true);
  compare_with_ref({512, 768, 256}, false, true);
}

TEST(Matmul, OnednnMatchesDoubleRef) {
  // against the exact-ish double reference, so both float paths cannot share a mistake
  const int N = 64, C = 96, OC = 48;
  Rng rng(5);
  const auto inp = random_normal<float>(rng, N * C);
  const auto weight = random_normal<float>(rng, OC * C);
  const auto bias = random_normal<float>(rng, OC);
  std::vector<float> out(N * OC);
  std::vector<double> out_d(N * OC);
  matmul_forward(out.data(), inp.data(), weight.data(), bias.data(), N, C, OC);
  matmul_forward_ref<double>(out_d.data(), cast_vec<double>(inp).data(), cast_vec<double>(weight).data(),
                             cast_vec<double>(bias).data(), N, C, OC);
  EXPECT_LT(rel_l2(out, out_d), 1e-6);
}

TEST(Matmul, BackwardAccumulates) {
  const int N = 9, C = 11, OC = 6;
  Rng rng(8);
  const auto inp = random_normal<float>(rng, N * C), weight = random_normal<float>(rng, OC * C);
  const auto dout = random_normal<float>(rng, N * OC);
  std::vector<float> dinp1(N * C), dw1(OC * C), db1(OC), dinp2(N * C), dw2(OC * C), db2(OC);
  matmul_backward(dinp1.data(), dw1.data(), db1.data(), dout.data(), inp.data(), weight.data(), N, C, OC);
  for (int k = 0; k < 2; k++)
    matmul_backward(dinp2.data(), dw2.data(), db2.data(), dout.data(), inp.data(), weight.data(), N, C, OC);
  for (auto* v : {&dinp1, &dw1, &db1})
    for (auto& x : *v) x *= 2.0f;
  EXPECT_LT(rel_l2(dinp2, dinp1), 1e-6);
  EXPECT_LT(rel_l2(dw2, dw1), 1e-6);
  EXPECT_LT(rel_l2(db2, db1), 1e-6);
  // same for the reference
  std::vector<double> r1(N * C), rw1(OC * C), rb1(OC), r2(N * C), rw2(OC * C), rb2(OC);
  const auto inpd = cast_vec<double>(inp), wd = cast_vec<double>(weight), doutd = cast_vec<double>(dout);
  matmul_backward_ref<double>(r1.data(), rw1.data(), rb1.data(), doutd.data(), inpd.data(), wd.data(), N, C, OC);
  for (int k = 0; k < 2; k++)
    matmul_backward_ref<double>(r2.data(), rw2.data(), rb2.data(), doutd.data(), inpd.data(), wd.data(), N, C, OC);
  for (auto* v : {&r1, &rw1, &rb1})
    for (auto& x : *v) x *= 2.0;
  EXPECT_LT(rel_l2(r2, r1), 1e-14);
  EXPECT_LT(rel_l2(rw2, rw1), 1e-14);
  EXPECT_LT(rel_l2(rb2, rb1), 1e-14);
}

TEST(Matmul, ForwardOverwritesOutput) {
  const int N = 3, C = 4, OC = 5;
  Rng rng(3);
  const auto inp = random_normal<float>(rng, N * C), weight = random_normal<float>(rng, OC * C);
  std::vector<float> a(N * OC, 0.0f), b(N * OC, 1e30f);
  matmul_forward(a.data(), inp.data(), weight.data(), nullptr, N, C, OC);
  matmul_forward(b.data(), inp.data(), weight.data(), nullptr, N, C, OC);
  EXPECT_TRUE(bit_equal(a, b));
}

TEST(Matmul, Deterministic) {
  const int N = 512, C = 256, OC = 768;
  Rng rng(9);
  const auto inp = random_normal<float>(rng, N * C), weight = random_normal<float>(rng, OC * C, 0.05);
  const auto bias = random_normal<float>(rng, OC), dout = random_normal<float>(rng, N * OC);
  std::vector<float> out[2], dinp[2], dw[2], db[2];
  for (int r = 0; r < 2; r++) {
    out[r].assign(N * OC, 0.0f);
    dinp[r].assign(N * C, 0.0f);
    dw[r].assign(OC * C, 0.0f);
    db[r].assign(OC, 0.0f);
    matmul_forward(out[r].data(), inp.data(), weight.data(), bias.data(), N, C, OC);
    matmul_backward(dinp[r].data(), dw[r].data(), db[r].data(), dout.data(), inp.data(), weight.data(), N, C, OC);
  }
  EXPECT_TRUE(bit_equal(out[0], out[1]));
  EXPECT_TRUE(bit_equal(dinp[0], dinp[1]));
  EXPECT_TRUE(bit_equal(dw[0], dw[1]));
  EXPECT_TRUE(bit_equal(db[0], db[1]));
}

TEST(Matmul, EmptyInnerDimensionGivesBias) {
  const std::vector<float> bias = {1.5f, -2.0f};
  std::vector<float> out(6, 7.0f);
  matmul_forward(out.data(), nullptr, nullptr, bias.data(), 3, 0, 2);
  EXPECT_EQ(out, (std::vector<float>{1.5f, -2.0f, 1.5f, -2.0f, 1.5f, -2.0f}));
  matmul_forward(out.data(), nullptr, nullptr, nullptr, 3, 0, 2);
  EXPECT_EQ(out, std::vector<float>(6, 0.0f));
}

TEST(Matmul, NegativeShapeThrows) {
  std::vector<float> buf(16);
  EXPECT_THROW(matmul_forward(buf.data(), buf.data(), buf.data(), nullptr, 2, -1, 2), Error);
  EXPECT_THROW(matmul_backward(buf.data(), buf.data(), nullptr, buf.data(), buf.data(), buf.data(), -2, 2, 2), Error);
}

}  // namespace
}  // namespace stretch::test

namespace stretch {
namespace {

// The strided product (oneDNN) against its plain reference, for every transpose combination, on views with
// leading dimensions larger than the rows (as the decoder's per-head cache views), with alpha and beta.
TEST(Gemm, StridedViewsMatchTheReference) {
  Rng rng(5);
  for (char ta : {'N', 'T'})
    for (char tb : {'N', 'T'}) {
      const long M = 3, N = 37, K = 8, pad = 5;
      const long lda = (ta == 'N' ? K : M) + pad, ldb = (tb == 'N' ? N : K) + pad, ldc = N + pad;
      std::vector<float> A((ta == 'N' ? M : K) * lda), B((tb == 'N' ? K : N) * ldb), C(M * ldc), R;
      for (auto& x : A) x = rng.normal();
      for (auto& x : B) x = rng.normal();
      for (auto& x : C) x = rng.normal();
      R = C;
      gemm(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 1.0f, C.data(), ldc);
      gemm_ref<float>(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 1.0f, R.data(), ldc);
      for (long i = 0; i < M; i++)
        for (long j = 0; j < ldc; j++)
          ASSERT_NEAR(C[i * ldc + j], R[i * ldc + j], 1e-5) << ta << tb << " at " << i << "," << j;
    }
}

}  // namespace
}  // namespace stretch
