#include "kernels/repeat_kv.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "core/error.hpp"
#include "kernels/gradcheck.hpp"

namespace stretch::test {
namespace {

// Exact values: packed entry = 1000 * row + column, so every copied value identifies its source.
TEST(RepeatKv, ForwardExactValues) {
  const std::size_t bt = 3;
  const int C = 12, NH = 6, NKV = 2, hd = 2, KVD = NKV * hd, G = NH / NKV;
  const int pw = C + 2 * KVD;
  std::vector<double> packed(bt * pw), full(bt * 3 * C, -1.0);
  for (std::size_t r = 0; r < bt; r++)
    for (int c = 0; c < pw; c++) packed[r * pw + c] = 1000.0 * r + c;
  repeat_kv_forward<double>(full.data(), packed.data(), bt, C, NH, NKV);
  for (std::size_t r = 0; r < bt; r++) {
    for (int c = 0; c < C; c++) EXPECT_EQ(full[r * 3 * C + c], 1000.0 * r + c);
    for (int h = 0; h < NH; h++) {
      for (int i = 0; i < hd; i++) {
        const int j = h / G;
        EXPECT_EQ(full[r * 3 * C + C + h * hd + i], 1000.0 * r + C + j * hd + i) << r << " k " << h << " " << i;
        EXPECT_EQ(full[r * 3 * C + 2 * C + h * hd + i], 1000.0 * r + C + KVD + j * hd + i)
            << r << " v " << h << " " << i;
      }
    }
  }
  // Hand-written row 0 k part: heads 0,1,2 <- kv head 0 (cols 12,13), heads 3,4,5 <- kv head 1 (cols 14,15)
  const std::vector<double> k0(full.begin() + C, full.begin() + 2 * C);
  EXPECT_EQ(k0, (std::vector<double>{12, 13, 12, 13, 12, 13, 14, 15, 14, 15, 14, 15}));
}

TEST(RepeatKv, BackwardExactValues) {
  // dfull k/v entries = head index + 1, so each kv head j receives sum over h in group j of (h + 1).
  const std::size_t bt = 2;
  const int C = 8, NH = 4, NKV = 2, hd = 2, KVD = 4;
  const int pw = C + 2 * KVD;
  std::vector<double> dfull(bt * 3 * C), dpacked(bt * pw, 0.5);
  for (std::size_t r = 0; r < bt; r++)
    for (int c = 0; c < 3 * C; c++) dfull[r * 3 * C + c] = c < C ? 10.0 * c : ((c - C) % C) / hd + 1.0 + 100 * r;
  repeat_kv_backward<double>(dpacked.data(), dfull.data(), bt, C, NH, NKV);
  for (std::size_t r = 0; r < bt; r++) {
    for (int c = 0; c < C; c++) EXPECT_EQ(dpacked[r * pw + c], 0.5 + 10.0 * c);
    for (int kv = 0; kv < 2; kv++) {
      for (int i = 0; i < hd; i++) {
        // group 0: heads 0,1 -> 1 + 2 = 3 (+ 200 r); group 1: heads 2,3 -> 3 + 4 = 7 (+ 200 r)
        EXPECT_EQ(dpacked[r * pw + C + kv * KVD + 0 * hd + i], 0.5 + 3.0 + 200.0 * r);
        EXPECT_EQ(dpacked[r * pw + C + kv * KVD + 1 * hd + i], 0.5 + 7.0 + 200.0 * r);
      }
    }
  }
}

TEST(RepeatKv, MhaIsPlainCopy) {
  const std::size_t bt = 5;
  const int C = 15, NH = 5;
  Rng rng(71);
  const auto packed = random_normal<float>(rng, bt * 3 * C), dfull = random_normal<float>(rng, bt * 3 * C);
  std::vector<float> full(bt * 3 * C);
  repeat_kv_forward<float>(full.data(), packed.data(), bt, C, NH, NH);
  EXPECT_TRUE(bit_equal(full, packed));
  std::vector<float> dpacked(bt * 3 * C, 0.0f);
  repeat_kv_backward<float>(dpacked.data(), dfull.data(), bt, C, NH, NH);
  EXPECT_TRUE(bit_equal(dpacked, dfull));
}

// The backward is the adjoint of the forward: <dfull, fwd(p)> = <bwd(dfull), p>, checked by finite differences.
void fd_repeat_kv(std::size_t bt, int C, int NH, int NKV, std::uint64_t seed) {
  const int hd = C / NH, KVD = NKV * hd, pw = C + 2 * KVD;
  Rng rng(seed);
  auto packed = random_normal(rng, bt * pw);
  const auto w = random_normal(rng, bt * 3 * C);
  auto loss = [&] {
    std::vector<double> f(bt * 3 * C);
    repeat_kv_forward<double>(f.data(), packed.data(), bt, C, NH, NKV);
    return weighted_sum(w, f.data());
  };
  std::vector<double> dpacked(packed.size());
  repeat_kv_backward<double>(dpacked.data(), w.data(), bt, C, NH, NKV);
  EXPECT_TRUE(gradcheck_ok(loss, {{"packed", packed.data(), dpacked.data(), packed.size()}}));
}

TEST(RepeatKv, Gradcheck) {
  fd_repeat_kv(4, 24, 6, 2, 72);  // the GQA fixture shape
  fd_repeat_kv(3, 24, 6, 3, 73);
  fd_repeat_kv(2, 24, 6, 1, 74);  // multi-query
  fd_repeat_kv(5, 24, 6, 6, 75);  // MHA
  fd_repeat_kv(1, 7, 7, 7, 76);   // hd 1, odd
  fd_repeat_kv(3, 30, 10, 5, 77);
}

TEST(RepeatKv, BackwardAccumulates) {
  const std::size_t bt = 4;
  const int C = 24, NH = 6, NKV = 2, pw = C + 2 * 8;
  Rng rng(78);
  const auto dfull = random_normal(rng, bt * 3 * C), init = random_normal(rng, bt * pw);
  std::vector<double> once(bt * pw, 0.0), acc = init;
  repeat_kv_backward<double>(once.data(), dfull.data(), bt, C, NH, NKV);
  repeat_kv_backward<double>(acc.data(), dfull.data(), bt, C, NH, NKV);
  for (std::size_t i = 0; i < acc.size(); i++) EXPECT_EQ(acc[i], init[i] + once[i]);
}

TEST(RepeatKv, FloatMatchesDouble) {
  const std::size_t bt = 9;
  const int C = 24, NH = 6, NKV = 2, pw = C + 16;
  Rng rng(79);
  const auto p = random_normal<float>(rng, bt * pw), df = random_normal<float>(rng, bt * 3 * C);
  std::vector<float> f(bt * 3 * C), dp(bt * pw);
  repeat_kv_forward<float>(f.data(), p.data(), bt, C, NH, NKV);
  repeat_kv_backward<float>(dp.data(), df.data(), bt, C, NH, NKV);
  const auto pd = cast_vec<double>(p), dfd = cast_vec<double>(df);
  std::vector<double> fd(bt * 3 * C), dpd(bt * pw);
  repeat_kv_forward<double>(fd.data(), pd.data(), bt, C, NH, NKV);
  repeat_kv_backward<double>(dpd.data(), dfd.data(), bt, C, NH, NKV);
  EXPECT_TRUE(bit_equal(f, cast_vec<float>(fd)));  // a copy is exact in either type
  EXPECT_LT(rel_l2(dp, dpd), 1e-6);
}

TEST(RepeatKv, InvalidShapesThrowConfigError) {
  std::vector<float> a(1000), b(1000);
  EXPECT_THROW(repeat_kv_forward<float>(a.data(), b.data(), 1, 24, 6, 4), ConfigError);   // NH % NKV
  EXPECT_THROW(repeat_kv_forward<float>(a.data(), b.data(), 1, 25, 6, 2), ConfigError);   // C % NH
  EXPECT_THROW(repeat_kv_forward<float>(a.data(), b.data(), 1, 24, 0, 1), ConfigError);   // NH = 0
  EXPECT_THROW(repeat_kv_forward<float>(a.data(), b.data(), 1, 24, 6, 0), ConfigError);   // NKV = 0
  EXPECT_THROW(repeat_kv_forward<float>(a.data(), b.data(), 1, 24, 6, 12), ConfigError);  // NKV > NH
  EXPECT_THROW(repeat_kv_backward<float>(a.data(), b.data(), 1, 24, 6, 4), ConfigError);
  EXPECT_THROW(repeat_kv_backward<double>(nullptr, nullptr, 1, -4, 2, 1), ConfigError);
}

}  // namespace
}  // namespace stretch::test
