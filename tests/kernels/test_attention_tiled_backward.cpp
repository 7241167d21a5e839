// The tiled (flash-style) attention backward (kernels/attention_tiled.hpp) against the plain kernel's backward
// (kernels/attention.hpp, the reference): dq, dk, dv and the learned T5 bias gradient, over odd lengths, head
// counts and sizes, windows, float and double; the forward's lse against log-sum-exp of the reference scores;
// thread-count independence; and a finite-difference check of the tiled pair on its own.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

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
const char* name(Kind k) { return k == Kind::kNone ? "none" : (k == Kind::kAlibi ? "alibi" : "t5"); }

template <class F>
double rel_diff(const std::vector<F>& a, const std::vector<F>& b) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < a.size(); i++) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  }
  return den > 0.0 ? num / den : num;
}

struct Diffs {
  double dqkv = 0, table = 0, lse = 0;
};

// Both backward passes on the same inputs (forward of each kernel first, as training does).
template <class F>
Diffs compare(Kind kind, int B, int T, int NH, int hd, int window, std::uint64_t seed) {
  Rng rng(seed);
  const int C = NH * hd;
  const std::size_t n_qkv = static_cast<std::size_t>(B) * T * 3 * C, n_out = static_cast<std::size_t>(B) * T * C;
  const auto qkv = random_normal<F>(rng, n_qkv);
  const auto dout = random_normal<F>(rng, n_out);
  const auto dqkv0 = random_normal<F>(rng, n_qkv);  // both accumulate into the same non-zero start
  std::vector<int> pos(static_cast<std::size_t>(B) * T);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) pos[static_cast<std::size_t>(b) * T + t] = t + 3;
  const F scale = static_cast<F>(1.0 / std::sqrt(static_cast<double>(hd)));
  const auto slopes = alibi_slopes(NH);
  const auto table = random_normal<F>(rng, static_cast<std::size_t>(kT5Buckets) * NH);
  std::vector<F> probs(static_cast<std::size_t>(B) * NH * T * T), out_ref(n_out), out(n_out);
  std::vector<F> lse(static_cast<std::size_t>(B) * NH * T);
  std::vector<F> d_ref = dqkv0, d = dqkv0;
  std::vector<F> part_ref(static_cast<std::size_t>(B) * NH * kT5Buckets), part(part_ref.size());
  auto run = [&](auto make_bias) {
    auto br = make_bias(part_ref.data());
    attention_forward(out_ref.data(), probs.data(), qkv.data(), pos.data(), br, B, T, C, NH, scale, window);
    attention_backward(d_ref.data(), dout.data(), qkv.data(), probs.data(), pos.data(), br, B, T, C, NH, scale, window);
    auto bt = make_bias(part.data());
    attention_forward_tiled(out.data(), qkv.data(), pos.data(), bt, B, T, C, NH, scale, window, lse.data());
    attention_backward_tiled(d.data(), dout.data(), qkv.data(), out.data(), lse.data(), pos.data(), bt, B, T, C, NH,
                             scale, window);
  };
  if (kind == Kind::kNone) run([](F*) { return NoBias{}; });
  else if (kind == Kind::kAlibi) run([&](F*) { return AlibiBias{slopes.data()}; });
  else run([&](F* p) { return T5Bias<F>{table.data(), p, NH}; });
  Diffs o;
  o.dqkv = rel_diff(d, d_ref);
  if (kind == Kind::kT5) o.table = rel_diff(part, part_ref);
  // lse against log sum_j exp(s_ij) recomputed from the reference probabilities: p_ij = exp(s_ij - lse_i), so
  // lse_i = s_ii - log p_ii (the diagonal is always visible)
  std::vector<F> lse_ref(lse.size());
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int i = 0; i < T; i++) {
        const F* qi = qkv.data() + (static_cast<std::size_t>(b) * T + i) * 3 * C + static_cast<std::size_t>(h) * hd;
        const F* ki = qi + C;
        double s = 0;
        for (int c = 0; c < hd; c++) s += static_cast<double>(qi[c]) * ki[c];
        s *= scale;
        if (kind == Kind::kAlibi) s += AlibiBias{slopes.data()}(h, pos[0], pos[0]);
        if (kind == Kind::kT5) s += T5Bias<F>{table.data(), nullptr, NH}(h, pos[0], pos[0]);
        const double p = probs[((static_cast<std::size_t>(b) * NH + h) * T + i) * T + i];
        lse_ref[(static_cast<std::size_t>(b) * NH + h) * T + i] = static_cast<F>(s - std::log(p));
      }
  o.lse = rel_diff(lse, lse_ref);
  return o;
}

TEST(AttentionTiledBackward, MatchesPlainKernelOverShapesAndWindows) {
  int cases = 0;
  for (Kind kind : {Kind::kNone, Kind::kAlibi, Kind::kT5})
    for (int T : {1, 2, 7, 63, 64, 65, 130, 300})
      for (int hd : {8, 32, 40})
        for (int window : {0, 5, 64, 100}) {
          const int NH = (T + hd) % 2 ? 3 : 2;
          const auto o = compare<float>(kind, 2, T, NH, hd, window, 500 + cases);
          const std::string what = std::string(name(kind)) + " T=" + std::to_string(T) + " hd=" +
                                   std::to_string(hd) + " window=" + std::to_string(window);
          EXPECT_LT(o.dqkv, 2e-5) << what;
          EXPECT_LT(o.table, 2e-5) << what;
          EXPECT_LT(o.lse, 2e-5) << what;
          cases++;
        }
  EXPECT_EQ(cases, 3 * 8 * 3 * 4);
}

TEST(AttentionTiledBackward, DoubleMatchesPlainKernelTightly) {
  for (Kind kind : {Kind::kNone, Kind::kAlibi, Kind::kT5})
    for (int T : {7, 65, 200})
      for (int window : {0, 33}) {
        const auto o = compare<double>(kind, 1, T, 3, 40, window, 77 + T);
        EXPECT_LT(o.dqkv, 1e-12) << name(kind) << " T=" << T << " window=" << window;
        EXPECT_LT(o.table, 1e-12) << name(kind) << " T=" << T << " window=" << window;
      }
}

TEST(AttentionTiledBackward, LongSequenceMatchesPlainKernel) {
  const auto o = compare<float>(Kind::kAlibi, 1, 2100, 2, 32, 0, 4242);
  EXPECT_LT(o.dqkv, 2e-5);
}

// The tiled pair on its own: the directional derivative of L = sum(w * out) along a random direction of qkv
// against central differences (double), with ALiBi and a window.
TEST(AttentionTiledBackward, FiniteDifferences) {
  const int B = 1, T = 70, NH = 2, hd = 16, C = NH * hd, window = 20;
  Rng rng(5);
  auto qkv = random_normal<double>(rng, static_cast<std::size_t>(B) * T * 3 * C);
  const auto w = random_normal<double>(rng, static_cast<std::size_t>(B) * T * C);
  const auto dir = random_normal<double>(rng, qkv.size());
  std::vector<int> pos(T);
  for (int t = 0; t < T; t++) pos[t] = t;
  const auto slopes = alibi_slopes(NH);
  const AlibiBias bias{slopes.data()};
  const double scale = 0.3;
  std::vector<double> out(w.size()), lse(static_cast<std::size_t>(B) * NH * T);
  auto loss = [&](const std::vector<double>& x) {
    attention_forward_tiled(out.data(), x.data(), pos.data(), bias, B, T, C, NH, scale, window, lse.data());
    double l = 0;
    for (std::size_t i = 0; i < out.size(); i++) l += w[i] * out[i];
    return l;
  };
  loss(qkv);
  std::vector<double> g(qkv.size(), 0.0);
  AlibiBias b2 = bias;
  attention_backward_tiled(g.data(), w.data(), qkv.data(), out.data(), lse.data(), pos.data(), b2, B, T, C, NH, scale,
                           window);
  double analytic = 0;
  for (std::size_t i = 0; i < g.size(); i++) analytic += g[i] * dir[i];
  const double eps = 1e-5;
  std::vector<double> xp = qkv, xm = qkv;
  for (std::size_t i = 0; i < qkv.size(); i++) {
    xp[i] += eps * dir[i];
    xm[i] -= eps * dir[i];
  }
  const double numeric = (loss(xp) - loss(xm)) / (2 * eps);
  EXPECT_NEAR(analytic, numeric, 1e-7 * std::max(1.0, std::abs(numeric)));
}

TEST(AttentionTiledBackward, DeterministicAcrossThreadCounts) {
  const int saved = omp_get_max_threads();
  const int B = 2, T = 150, NH = 3, hd = 32, C = NH * hd;
  Rng rng(8);
  const auto qkv = random_normal<float>(rng, static_cast<std::size_t>(B) * T * 3 * C);
  const auto dout = random_normal<float>(rng, static_cast<std::size_t>(B) * T * C);
  std::vector<int> pos(static_cast<std::size_t>(B) * T);
  for (std::size_t i = 0; i < pos.size(); i++) pos[i] = static_cast<int>(i % T);
  const auto table = random_normal<float>(rng, static_cast<std::size_t>(kT5Buckets) * NH);
  std::vector<float> out(dout.size()), lse(static_cast<std::size_t>(B) * NH * T);
  std::vector<float> d1(qkv.size(), 0.0f), d2(qkv.size(), 0.0f);
  std::vector<float> p1(static_cast<std::size_t>(B) * NH * kT5Buckets), p2(p1.size());
  T5Bias<float> fwd{table.data(), nullptr, NH};
  attention_forward_tiled(out.data(), qkv.data(), pos.data(), fwd, B, T, C, NH, 0.2f, 0, lse.data());
  omp_set_num_threads(1);
  T5Bias<float> b1{table.data(), p1.data(), NH};
  attention_backward_tiled(d1.data(), dout.data(), qkv.data(), out.data(), lse.data(), pos.data(), b1, B, T, C, NH,
                           0.2f);
  omp_set_num_threads(2);
  T5Bias<float> b2{table.data(), p2.data(), NH};
  attention_backward_tiled(d2.data(), dout.data(), qkv.data(), out.data(), lse.data(), pos.data(), b2, B, T, C, NH,
                           0.2f);
  omp_set_num_threads(saved);
  EXPECT_EQ(0, std::memcmp(d1.data(), d2.data(), d1.size() * sizeof(float)));
  EXPECT_EQ(p1, p2);
}

}  // namespace
}  // namespace stretch
