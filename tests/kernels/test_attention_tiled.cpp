// The tiled, online-softmax attention forward (kernels/attention_tiled.hpp) against the plain kernel
// (kernels/attention.hpp) with the position biases of position/: odd lengths, several head counts and sizes,
// shifted positions, float and double, thread-count independence and a long sequence; the two-score-set forward
// (FarScores: Self-Extend / ReRoPE) against a direct double-precision evaluation of its definition.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/cpu.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "kernels/attention.hpp"
#include "kernels/attention_tiled.hpp"
#include "kernels/gradcheck.hpp"
#include "position/alibi.hpp"
#include "position/t5.hpp"

namespace stretch {
namespace {

using test::random_normal;

enum class Kind { kNone, kAlibi, kT5 };

std::vector<int> shifted_pos(int B, int T, int offset) {
  std::vector<int> p(static_cast<std::size_t>(B) * T);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) p[static_cast<std::size_t>(b) * T + t] = t + offset;
  return p;
}

// max |a - b| / max |b|
template <class F>
double rel_diff(const std::vector<F>& a, const std::vector<F>& b) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < a.size(); i++) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  }
  return den > 0.0 ? num / den : num;
}

struct Outputs {
  double rel = 0.0;
  bool finite = true;
};

// Runs both kernels on the same random inputs and returns the relative difference of their outputs.
template <class F>
Outputs compare(Kind kind, int B, int T, int NH, int hd, int offset, std::uint64_t seed, double qk_scale = 1.0) {
  Rng rng(seed);
  const int C = NH * hd;
  const auto qkv = random_normal<F>(rng, static_cast<std::size_t>(B) * T * 3 * C, qk_scale);
  const auto pos = shifted_pos(B, T, offset);
  const F scale = static_cast<F>(1.0 / std::sqrt(static_cast<double>(hd)));
  std::vector<F> ref(static_cast<std::size_t>(B) * T * C), out(ref.size(), F(-7));
  std::vector<F> probs(static_cast<std::size_t>(B) * NH * T * T);
  const auto slopes = alibi_slopes(NH);
  const auto table = random_normal<F>(rng, static_cast<std::size_t>(kT5Buckets) * NH);
  auto run = [&](const auto& bias) {
    attention_forward(ref.data(), probs.data(), qkv.data(), pos.data(), bias, B, T, C, NH, scale);
    attention_forward_tiled(out.data(), qkv.data(), pos.data(), bias, B, T, C, NH, scale);
  };
  if (kind == Kind::kNone) run(NoBias{});
  else if (kind == Kind::kAlibi) run(AlibiBias{slopes.data()});
  else run(T5Bias<F>{table.data(), nullptr, NH});
  Outputs o;
  o.rel = rel_diff(out, ref);
  o.finite = std::all_of(out.begin(), out.end(), [](F x) { return std::isfinite(x); });
  return o;
}

const char* name(Kind k) { return k == Kind::kNone ? "none" : (k == Kind::kAlibi ? "alibi" : "t5"); }

TEST(AttentionTiled, MatchesPlainKernelOverShapes) {
  const int lengths[] = {1, 2, 7, 63, 64, 65, 129, 300, 1031};
  int cases = 0;
  for (Kind kind : {Kind::kNone, Kind::kAlibi, Kind::kT5})
    for (int T : lengths)
      for (int B : {1, 2})
        for (int NH : {3, 8})
          for (int hd : {4, 8, 32, 40}) {
            // the longest length with a subset of the head shapes keeps the test fast
            if (T == 1031 && (B == 2 || hd == 4 || hd == 8)) continue;
            const auto o = compare<float>(kind, B, T, NH, hd, 5, 1000 + cases);
            EXPECT_TRUE(o.finite) << name(kind) << " T=" << T << " B=" << B << " NH=" << NH << " hd=" << hd;
            EXPECT_LT(o.rel, 1e-5) << name(kind) << " T=" << T << " B=" << B << " NH=" << NH << " hd=" << hd;
            cases++;
          }
  EXPECT_GT(cases, 200);
}

TEST(AttentionTiled, DoubleMatchesPlainKernelTightly) {
  for (Kind kind : {Kind::kNone, Kind::kAlibi, Kind::kT5})
    for (int T : {1, 7, 65, 300})
      for (int hd : {4, 32, 40}) {
        const auto o = compare<double>(kind, 2, T, 3, hd, 5, 77 + T + hd);
        EXPECT_LT(o.rel, 1e-12) << name(kind) << " T=" << T << " hd=" << hd;
      }
}

// Large logits (scores spread over tens of units) exercise the running-max rescaling.
TEST(AttentionTiled, LargeLogitsRescaleCorrectly) {
  for (Kind kind : {Kind::kNone, Kind::kAlibi})
    for (int T : {65, 257}) {
      const auto o = compare<float>(kind, 1, T, 2, 32, 0, 5 + T, 3.0);
      EXPECT_TRUE(o.finite);
      EXPECT_LT(o.rel, 1e-5) << name(kind) << " T=" << T;
    }
}

TEST(AttentionTiled, FloatAgreesWithDouble) {
  const int B = 2, T = 129, NH = 3, hd = 40, C = NH * hd;
  Rng rng(11);
  const auto qkvd = random_normal<double>(rng, static_cast<std::size_t>(B) * T * 3 * C);
  std::vector<float> qkvf(qkvd.begin(), qkvd.end());
  const auto pos = shifted_pos(B, T, 5);
  const auto slopes = alibi_slopes(NH);
  std::vector<double> outd(static_cast<std::size_t>(B) * T * C);
  std::vector<float> outf(outd.size());
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  attention_forward_tiled(outd.data(), qkvd.data(), pos.data(), AlibiBias{slopes.data()}, B, T, C, NH, scale);
  attention_forward_tiled(outf.data(), qkvf.data(), pos.data(), AlibiBias{slopes.data()}, B, T, C, NH,
                          static_cast<float>(scale));
  std::vector<double> outf_d(outf.begin(), outf.end());
  EXPECT_LT(rel_diff(outf_d, outd), 1e-5);
}

TEST(AttentionTiled, PositionsShiftInvarianceForAlibiAndDependenceOtherwise) {
  // ALiBi depends on position differences only: offset 5 and offset 0 give identical outputs.
  const int B = 1, T = 100, NH = 4, hd = 8, C = NH * hd;
  Rng rng(3);
  const auto qkv = random_normal<float>(rng, static_cast<std::size_t>(B) * T * 3 * C);
  const auto slopes = alibi_slopes(NH);
  const auto p0 = shifted_pos(B, T, 0), p5 = shifted_pos(B, T, 5);
  std::vector<float> a(static_cast<std::size_t>(B) * T * C), b(a.size());
  attention_forward_tiled(a.data(), qkv.data(), p0.data(), AlibiBias{slopes.data()}, B, T, C, NH, 0.35f);
  attention_forward_tiled(b.data(), qkv.data(), p5.data(), AlibiBias{slopes.data()}, B, T, C, NH, 0.35f);
  EXPECT_EQ(a, b);
}

TEST(AttentionTiled, DeterministicAcrossThreadCounts) {
  const int saved = omp_get_max_threads();
  for (int T : {65, 1031}) {
    const int B = 1, NH = 3, hd = 40, C = NH * hd;
    Rng rng(21 + T);
    const auto qkv = random_normal<float>(rng, static_cast<std::size_t>(B) * T * 3 * C);
    const auto pos = shifted_pos(B, T, 5);
    const auto slopes = alibi_slopes(NH);
    std::vector<float> one(static_cast<std::size_t>(B) * T * C), two(one.size());
    omp_set_num_threads(1);
    attention_forward_tiled(one.data(), qkv.data(), pos.data(), AlibiBias{slopes.data()}, B, T, C, NH, 0.2f);
    omp_set_num_threads(2);
    attention_forward_tiled(two.data(), qkv.data(), pos.data(), AlibiBias{slopes.data()}, B, T, C, NH, 0.2f);
    omp_set_num_threads(saved);
    EXPECT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * sizeof(float))) << "T=" << T;
  }
}

TEST(AttentionTiled, CausalFutureKeysDoNotMatter) {
  // Changing the keys and values of the last position changes only the last output row.
  const int B = 1, T = 130, NH = 2, hd = 32, C = NH * hd;
  Rng rng(9);
  auto qkv = random_normal<float>(rng, static_cast<std::size_t>(B) * T * 3 * C);
  const auto pos = shifted_pos(B, T, 5);
  std::vector<float> a(static_cast<std::size_t>(B) * T * C), b(a.size());
  attention_forward_tiled(a.data(), qkv.data(), pos.data(), NoBias{}, B, T, C, NH, 0.2f);
  for (int c = C; c < 3 * C; c++) qkv[static_cast<std::size_t>(T - 1) * 3 * C + c] += 1.0f;
  attention_forward_tiled(b.data(), qkv.data(), pos.data(), NoBias{}, B, T, C, NH, 0.2f);
  EXPECT_TRUE(std::equal(a.begin(), a.end() - C, b.begin()));
  EXPECT_FALSE(std::equal(a.end() - C, a.end(), b.end() - C));
}

TEST(AttentionTiled, LongSequenceMatchesPlainKernel) {
  const auto o = compare<float>(Kind::kAlibi, 1, 4096, 2, 32, 5, 4242);
  EXPECT_TRUE(o.finite);
  EXPECT_LT(o.rel, 1e-5);
}

TEST(AttentionTiled, EmptyAndInvalidShapes) {
  std::vector<float> out(4, 1.0f), qkv(12, 0.0f);
  std::vector<int> pos(4, 0);
  attention_forward_tiled(out.data(), qkv.data(), pos.data(), NoBias{}, 0, 4, 1, 1, 1.0f);
  attention_forward_tiled(out.data(), qkv.data(), pos.data(), NoBias{}, 1, 0, 1, 1, 1.0f);
  EXPECT_EQ(out, std::vector<float>(4, 1.0f));
  EXPECT_THROW(attention_forward_tiled(out.data(), qkv.data(), pos.data(), NoBias{}, 1, 4, 3, 2, 1.0f), ConfigError);
}

// The definition of the two-score-set forward, directly in double: s_ij = scale q_i.k_j + bias when i - j < w,
// else scale q'_i.k'_j + bias; causal softmax over j; out = P v. qkv (B, T, 3C), far (B, T, 2C).
std::vector<double> two_set_reference(const std::vector<float>& qkv, const std::vector<float>& far, const int* pos,
                                      const AlibiBias& bias, int B, int T, int NH, int hd, double scale, int w,
                                      int window) {
  const int C = NH * hd;
  std::vector<double> out(static_cast<std::size_t>(B) * T * C, 0.0), s(static_cast<std::size_t>(T));
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int i = 0; i < T; i++) {
        const int lo = window > 0 ? std::max(0, i - window + 1) : 0;
        double mx = -1e300;
        for (int j = lo; j <= i; j++) {
          const bool near = i - j < w;
          const float* q = near ? &qkv[(static_cast<std::size_t>(b) * T + i) * 3 * C + h * hd]
                                : &far[(static_cast<std::size_t>(b) * T + i) * 2 * C + h * hd];
          const float* k = near ? &qkv[(static_cast<std::size_t>(b) * T + j) * 3 * C + C + h * hd]
                                : &far[(static_cast<std::size_t>(b) * T + j) * 2 * C + C + h * hd];
          double d = 0.0;
          for (int c = 0; c < hd; c++) d += static_cast<double>(q[c]) * k[c];
          s[j] = scale * d + bias.operator()<double>(h, pos[b * T + i], pos[b * T + j]);
          mx = std::max(mx, s[j]);
        }
        double sum = 0.0;
        for (int j = lo; j <= i; j++) sum += s[j] = std::exp(s[j] - mx);
        for (int j = lo; j <= i; j++)
          for (int c = 0; c < hd; c++)
            out[(static_cast<std::size_t>(b) * T + i) * C + h * hd + c] +=
                s[j] / sum * qkv[(static_cast<std::size_t>(b) * T + j) * 3 * C + 2 * C + h * hd + c];
      }
  return out;
}

TEST(AttentionTiled, TwoScoreSetsMergedByDistanceMatchTheirDefinition) {
  const std::vector<float> slopes = alibi_slopes(2);
  for (int T : {1, 7, 64, 150}) {
    for (int hd : {8, 12}) {
      for (int w : {1, 5, 17, 64, 100, 1000}) {
        for (int window : {0, 40}) {
          const int B = 2, NH = 2, C = NH * hd;
          Rng rng(static_cast<std::uint64_t>(T * 1000 + hd * 100 + w + window));
          const auto qkv = random_normal<float>(rng, static_cast<std::size_t>(B) * T * 3 * C);
          const auto far = random_normal<float>(rng, static_cast<std::size_t>(B) * T * 2 * C);
          const auto pos = shifted_pos(B, T, 3);
          const float scale = 0.35f;
          std::vector<float> out(static_cast<std::size_t>(B) * T * C, -7.0f);
          attention_forward_tiled(out.data(), qkv.data(), pos.data(), AlibiBias{slopes.data()}, B, T, C, NH, scale,
                                  window, static_cast<float*>(nullptr), FarScores<float>{far.data(), w});
          const auto ref = two_set_reference(qkv, far, pos.data(), AlibiBias{slopes.data()}, B, T, NH, hd, scale, w,
                                             window);
          double err = 0.0, big = 0.0;
          for (std::size_t i = 0; i < out.size(); i++) {
            err = std::max(err, std::abs(out[i] - ref[i]));
            big = std::max(big, std::abs(ref[i]));
          }
          EXPECT_LT(err / big, 2e-6) << "T " << T << " hd " << hd << " w " << w << " window " << window;
        }
      }
    }
  }
}

TEST(AttentionTiled, AFarWindowCoveringTheSequenceIsThePlainKernelBitForBit) {
  const int B = 1, T = 150, NH = 2, hd = 8, C = NH * hd;
  Rng rng(3);
  const auto qkv = random_normal<float>(rng, static_cast<std::size_t>(B) * T * 3 * C);
  const auto far = random_normal<float>(rng, static_cast<std::size_t>(B) * T * 2 * C);
  const auto pos = shifted_pos(B, T, 0);
  std::vector<float> a(static_cast<std::size_t>(B) * T * C), b(a.size());
  attention_forward_tiled(a.data(), qkv.data(), pos.data(), NoBias{}, B, T, C, NH, 0.3f);
  attention_forward_tiled(b.data(), qkv.data(), pos.data(), NoBias{}, B, T, C, NH, 0.3f, 0,
                          static_cast<float*>(nullptr), FarScores<float>{far.data(), T});
  EXPECT_EQ(a, b);
  EXPECT_THROW(attention_forward_tiled(b.data(), qkv.data(), pos.data(), NoBias{}, B, T, C, NH, 0.3f, 0,
                                       static_cast<float*>(nullptr), FarScores<float>{far.data(), 0}),
               ConfigError);
}

// The portable build holds two copies of the tiled kernels (attention_tiled.hpp): for the build target, with 32-byte
// vectors, and for AVX-512 CPUs, with 64-byte ones. The products run lane by lane in the same order, but a softmax
// row's sum is reduced over the vector's lanes, 8 or 16 of them: the copies agree to float rounding, not bit for bit
// (and so do not both need to be bit-exact against the plain kernel's tests). Forward with its lse and backward, a
// head size that needs padding (40), a window, T5's learned bias.
TEST(AttentionTiled, TheAvx512CopyAgreesWithTheBuildTargetsOne) {
#if !STRETCH_TILED_AVX512_COPY
  GTEST_SKIP() << "one copy only: the build target has AVX-512";
#else
  if (!cpu_features().avx512) GTEST_SKIP() << "this CPU has no AVX-512: the AVX-512 copy cannot run here";
  const int B = 2, T = 150, C = 80, NH = 2;
  Rng rng(2024);
  const auto qkv = random_normal<float>(rng, static_cast<std::size_t>(B) * T * 3 * C);
  const auto dout = random_normal<float>(rng, static_cast<std::size_t>(B) * T * C);
  const auto table = random_normal<float>(rng, static_cast<std::size_t>(kT5Buckets) * NH);
  std::vector<int> pos(static_cast<std::size_t>(B) * T);
  for (std::size_t i = 0; i < pos.size(); i++) pos[i] = static_cast<int>(i % T);
  const float scale = 0.158f;
  for (int window : {0, 37}) {
    SCOPED_TRACE("window " + std::to_string(window));
    struct Out {
      std::vector<float> out, lse, dqkv, dtable;
    };
    auto go = [&](bool avx512) {
      Out o;
      o.out.assign(static_cast<std::size_t>(B) * T * C, 0.0f);
      o.lse.assign(static_cast<std::size_t>(B) * NH * T, 0.0f);
      o.dqkv.assign(qkv.size(), 0.0f);
      std::vector<float> partial(static_cast<std::size_t>(B) * NH * kT5Buckets, 0.0f);
      T5Bias<float> bias{table.data(), partial.data(), NH};
      if (avx512) {
        tiled_avx512::attention_forward_tiled(o.out.data(), qkv.data(), pos.data(), bias, B, T, C, NH, scale, window,
                                              o.lse.data(), FarScores<float>{}, 0);
        tiled_avx512::attention_backward_tiled(o.dqkv.data(), dout.data(), qkv.data(), o.out.data(), o.lse.data(),
                                               pos.data(), bias, B, T, C, NH, scale, window, 0);
      } else {
        tiled_build_target::attention_forward_tiled(o.out.data(), qkv.data(), pos.data(), bias, B, T, C, NH, scale,
                                                    window, o.lse.data(), FarScores<float>{}, 0);
        tiled_build_target::attention_backward_tiled(o.dqkv.data(), dout.data(), qkv.data(), o.out.data(),
                                                     o.lse.data(), pos.data(), bias, B, T, C, NH, scale, window, 0);
      }
      o.dtable.assign(table.size(), 0.0f);
      t5_reduce_grad(o.dtable.data(), partial.data(), B, NH);
      return o;
    };
    const Out a = go(true), p = go(false);
    EXPECT_LT(test::rel_l2(a.out, p.out), 1e-6);
    EXPECT_LT(test::rel_l2(a.lse, p.lse), 1e-6);
    EXPECT_LT(test::rel_l2(a.dqkv, p.dqkv), 1e-5);
    EXPECT_LT(test::rel_l2(a.dtable, p.dtable), 1e-5);
#ifndef __SANITIZE_ADDRESS__  // (sanitized build: see AttentionFast.DispatchFollowsTheCpuPaths)
    EXPECT_FALSE(test::bit_equal(a.out, p.out) && test::bit_equal(a.dqkv, p.dqkv))
        << "the two copies gave the same bits: is the AVX-512 copy the one that ran?";
#endif
  }
#endif
}

}  // namespace
}  // namespace stretch
