// Shifted sparse attention (LongLoRA's S2-Attn; kernels/attention_tiled.hpp, KeyRange) in the tiled kernel, forward
// and backward, against a direct float64 evaluation of its definition: softmax over the keys of the query's group
// (heads from NH/2 on with groups shifted by G/2, stopping at the sequence's ends), P V, and the gradients
//   dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(P dP)), dQ = scale dS K, dK = scale dS^T Q.
// Also: one group (G >= T) is the plain causal kernel; no query sees past its group; the mask stays causal.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "kernels/attention_tiled.hpp"
#include "kernels/gradcheck.hpp"
#include "position/alibi.hpp"

namespace stretch {
namespace {

using test::random_normal;

// The first key query i of head h sees under S2 with groups of G (and no window), from the definition.
int group_start(int h, int NH, int G, int i) {
  const int shift = h >= NH / 2 ? G / 2 : 0;
  // the group of i: the k with k G - shift <= i < (k + 1) G - shift
  int start = -shift;
  while (start + G <= i) start += G;
  return std::max(0, start);
}

struct Reference {
  std::vector<double> out, dqkv;
};

Reference reference(const std::vector<float>& qkv, const std::vector<float>& dout, const std::vector<int>& pos,
                    const AlibiBias* bias, int B, int T, int NH, int hd, double scale, int G) {
  const int C = NH * hd;
  const std::size_t C3 = 3 * static_cast<std::size_t>(C);
  Reference r;
  r.out.assign(static_cast<std::size_t>(B) * T * C, 0.0);
  r.dqkv.assign(qkv.size(), 0.0);
  std::vector<double> p(T), dp(T);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int i = 0; i < T; i++) {
        const int lo = G > 0 && G < T ? group_start(h, NH, G, i) : 0;
        const float* q = &qkv[(static_cast<std::size_t>(b) * T + i) * C3 + h * hd];
        double mx = -1e300;
        for (int j = lo; j <= i; j++) {
          const float* k = &qkv[(static_cast<std::size_t>(b) * T + j) * C3 + C + h * hd];
          double d = 0;
          for (int c = 0; c < hd; c++) d += static_cast<double>(q[c]) * k[c];
          p[j] = scale * d + (bias ? (*bias)(h, pos[b * T + i], pos[b * T + j]) : 0.0);
          mx = std::max(mx, p[j]);
        }
        double sum = 0;
        for (int j = lo; j <= i; j++) sum += p[j] = std::exp(p[j] - mx);
        for (int j = lo; j <= i; j++) p[j] /= sum;
        const float* dO = &dout[(static_cast<std::size_t>(b) * T + i) * C + h * hd];
        double* o = &r.out[(static_cast<std::size_t>(b) * T + i) * C + h * hd];
        double pdp = 0;
        for (int j = lo; j <= i; j++) {
          const float* v = &qkv[(static_cast<std::size_t>(b) * T + j) * C3 + 2 * C + h * hd];
          double d = 0;
          for (int c = 0; c < hd; c++) {
            o[c] += p[j] * v[c];
            d += static_cast<double>(dO[c]) * v[c];
            r.dqkv[(static_cast<std::size_t>(b) * T + j) * C3 + 2 * C + h * hd + c] += p[j] * dO[c];  // dV
          }
          dp[j] = d;
          pdp += p[j] * d;
        }
        for (int j = lo; j <= i; j++) {
          const double ds = p[j] * (dp[j] - pdp) * scale;
          const float* k = &qkv[(static_cast<std::size_t>(b) * T + j) * C3 + C + h * hd];
          for (int c = 0; c < hd; c++) {
            r.dqkv[(static_cast<std::size_t>(b) * T + i) * C3 + h * hd + c] += ds * k[c];          // dQ
            r.dqkv[(static_cast<std::size_t>(b) * T + j) * C3 + C + h * hd + c] += ds * q[c];      // dK
          }
        }
      }
  return r;
}

template <class A, class Bv>
double rel_diff(const A& a, const Bv& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); i++) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  }
  return den > 0 ? num / den : num;
}

TEST(AttentionS2, ForwardAndBackwardEqualTheFloat64Definition) {
  // lengths across tile and block boundaries, group sizes that divide T and ones that do not, odd head counts
  const struct {
    int B, T, NH, hd, G;
    bool alibi;
  } cases[] = {{2, 64, 4, 16, 16, false}, {1, 100, 3, 8, 24, true}, {2, 257, 4, 12, 64, true},
               {1, 96, 2, 32, 7, false},  {1, 130, 5, 4, 32, true},  {1, 300, 2, 16, 150, false}};
  for (const auto& k : cases) {
    SCOPED_TRACE("B " + std::to_string(k.B) + " T " + std::to_string(k.T) + " NH " + std::to_string(k.NH) + " hd " +
                 std::to_string(k.hd) + " G " + std::to_string(k.G));
    Rng rng(17 + k.T + k.G);
    const int C = k.NH * k.hd;
    const auto qkv = random_normal<float>(rng, static_cast<std::size_t>(k.B) * k.T * 3 * C);
    const auto dout = random_normal<float>(rng, static_cast<std::size_t>(k.B) * k.T * C);
    std::vector<int> pos(static_cast<std::size_t>(k.B) * k.T);
    for (std::size_t i = 0; i < pos.size(); i++) pos[i] = static_cast<int>(i % k.T) + 3;
    const float scale = 1.0f / std::sqrt(static_cast<float>(k.hd));
    const auto slopes = alibi_slopes(k.NH);
    const AlibiBias alibi{slopes.data()};
    const Reference ref = reference(qkv, dout, pos, k.alibi ? &alibi : nullptr, k.B, k.T, k.NH, k.hd, scale, k.G);
    std::vector<float> out(static_cast<std::size_t>(k.B) * k.T * C), lse(static_cast<std::size_t>(k.B) * k.NH * k.T);
    std::vector<float> dqkv(qkv.size(), 0.0f);
    auto run = [&](auto bias) {
      attention_forward_tiled(out.data(), qkv.data(), pos.data(), bias, k.B, k.T, C, k.NH, scale, 0, lse.data(),
                              FarScores<float>{}, k.G);
      attention_backward_tiled(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), pos.data(), bias, k.B,
                               k.T, C, k.NH, scale, 0, k.G);
    };
    if (k.alibi) run(alibi);
    else run(NoBias{});
    EXPECT_LT(rel_diff(out, ref.out), 2e-6);
    EXPECT_LT(rel_diff(dqkv, ref.dqkv), 2e-5);
  }
}

// The masks are what they claim: with G < T the output differs from plain causal attention, a key's change reaches
// only the queries of its group(s) at or after it, and one group (G >= T) is the plain kernel bit for bit.
TEST(AttentionS2, GroupsLimitWhatAQuerySeesAndOneGroupIsPlainAttention) {
  const int B = 1, T = 64, NH = 2, hd = 8, C = NH * hd, G = 16;
  Rng rng(5);
  auto qkv = random_normal<float>(rng, static_cast<std::size_t>(T) * 3 * C);
  std::vector<int> pos(T);
  for (int t = 0; t < T; t++) pos[t] = t;
  const float scale = 0.35f;
  auto fwd = [&](const std::vector<float>& x, int group) {
    std::vector<float> o(static_cast<std::size_t>(T) * C);
    attention_forward_tiled(o.data(), x.data(), pos.data(), NoBias{}, B, T, C, NH, scale, 0, static_cast<float*>(nullptr),
                            FarScores<float>{}, group);
    return o;
  };
  const auto plain = fwd(qkv, 0);
  EXPECT_EQ(fwd(qkv, T), plain);
  EXPECT_EQ(fwd(qkv, 5 * T), plain);
  const auto s2 = fwd(qkv, G);
  EXPECT_GT(rel_diff(s2, plain), 1e-3);
  // change the key (and value) of position 20 of both heads: head 0's group [16, 32), head 1's [8, 24)
  auto moved = qkv;
  for (int c = C; c < 3 * C; c++) moved[20 * 3 * C + c] += 1.0f;
  const auto s2m = fwd(moved, G);
  for (int i = 0; i < T; i++)
    for (int h = 0; h < NH; h++) {
      const bool sees = i >= 20 && (h == 0 ? i < 32 : i < 24);
      bool changed = false;
      for (int d = 0; d < hd; d++) changed |= s2m[i * C + h * hd + d] != s2[i * C + h * hd + d];
      EXPECT_EQ(changed, sees) << "query " << i << " head " << h;
    }
  EXPECT_THROW(fwd(qkv, 1), ConfigError);
  EXPECT_THROW(fwd(qkv, -4), ConfigError);
}

}  // namespace
}  // namespace stretch
