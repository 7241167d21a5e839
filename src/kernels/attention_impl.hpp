// The plain (reference) causal attention kernel: the contract is in kernels/attention.hpp, which includes this
// file at its end. attention_forward / attention_backward dispatch: for F = float, hd a multiple of 16 and a CPU
// with AVX-512 (core/cpu.hpp's cpu_paths(), at run time), to the register-blocked kernel of
// kernels/attention_fast.hpp (tested against the plain one in tests/kernels/test_attention_fast.cpp); otherwise
// (double, the finite-difference oracle; other head sizes; other CPUs, or STRETCH_MAX_ISA=avx2) to the plain kernel
// below, attention_detail::forward_generic / backward_generic.
//
// Parallel over the B * NH (b, h) pairs with a static schedule. Every (b, h) task reads and writes only its own
// head's channels (and its own probs block and, for a learned bias, its own partial sums), and does its
// arithmetic in a fixed order, so results are bitwise identical for any thread count.
//
// Per (b, h) task, the keys (forward) or values (backward) of the head are first transposed into a thread-local
// (hd, T) scratch block, so that a query row's scores q_i . k_j (and dout_i . v_j) for all j are built by hd
// contiguous, vectorizable passes over j: each dot product is summed sequentially over d = 0 .. hd-1, the same
// order whatever the vector width. All loops over the head size are element-wise (y += a x). Every sum over keys
// runs over j ascending and every sum over queries (dk_j, dv_j, the bias gradient) over i ascending.
//
// Sliding window (attention.hpp): with W = effective_window(window, T) (T when window is 0 or >= T), query i sees
// keys lo(i) = max(0, i - W + 1) .. i; every loop over keys starts at lo(i) and every loop over queries stops at
// j + W - 1, so the work is O(T * W) per (b, h). With W = T the loops are exactly those of the causal kernel.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "core/error.hpp"
#include "kernels/vecmath.hpp"

namespace stretch {
namespace attention_detail {

// row[j] = sum_d x[d] * mT[d * T + j] for j < n, summed in the order d = 0 .. hd-1 (mT is a (hd, T) block).
template <class F>
inline void rowdot(F* __restrict__ row, const F* __restrict__ x, const F* __restrict__ mT, int hd, int T, int n) {
  const F x0 = x[0];
  for (int j = 0; j < n; j++) row[j] = x0 * mT[j];
  for (int d = 1; d < hd; d++) {
    const F xd = x[d];
    const F* m = mT + static_cast<std::int64_t>(d) * T;
    for (int j = 0; j < n; j++) row[j] += xd * m[j];
  }
}

// mT (hd, T) = the (T, hd) rows of one head, read with row stride ld.
template <class F>
inline void transpose_head(F* __restrict__ mT, const F* __restrict__ m, std::int64_t ld, int hd, int T) {
  for (int j = 0; j < T; j++)
    for (int d = 0; d < hd; d++) mT[static_cast<std::int64_t>(d) * T + j] = m[j * ld + d];
}

// y += a * x
template <class F>
inline void axpy(F* __restrict__ y, F a, const F* __restrict__ x, int n) {
  for (int d = 0; d < n; d++) y[d] += a * x[d];
}

// Query rows are processed in tiles of kRowTile rows: the sums over keys (out_i, dq_i) run with the key index
// outermost inside a tile, so consecutive vector updates go to different rows instead of waiting on each other.
inline constexpr int kRowTile = 16;

// Shape checks shared by forward and backward (throws ConfigError; B or T of 0 is an empty no-op).
inline void check_shape(int B, int T, int C, int NH) {
  if (B < 0 || T < 0 || C <= 0 || NH <= 0 || C % NH != 0)
    throw ConfigError("attention: invalid shape B=" + std::to_string(B) + " T=" + std::to_string(T) +
                      " C=" + std::to_string(C) + " NH=" + std::to_string(NH) +
                      " (expected B, T >= 0, C, NH > 0 and C divisible by NH)");
}

// Throws ConfigError for a negative window (0 = no window).
inline void check_window(int window, const char* kernel = "attention") {
  if (window < 0)
    throw ConfigError(std::string(kernel) + ": invalid window " + std::to_string(window) +
                      " (expected 0 for full causal attention or a positive number of keys)");
}

// The number of keys a query sees at most: window, or T when window is 0 or larger than T (T >= 1).
inline int effective_window(int window, int T) { return window > 0 && window < T ? window : T; }

// The first key visible to query i with effective window W.
inline int window_start(int i, int W) { return std::max(0, i - W + 1); }

template <class F, class Bias>
void forward_generic(F* out, F* probs, const F* qkv, const int* pos, const Bias& bias, int B, int T, int C, int NH,
                     F scale, int window = 0) {
  const int hd = C / NH;
  const int W = attention_detail::effective_window(window, T);
  const std::int64_t C3 = 3 * static_cast<std::int64_t>(C);
  const std::int64_t TT = static_cast<std::int64_t>(T) * T;
  constexpr int kTile = attention_detail::kRowTile;

#pragma omp parallel
  {
    std::vector<F> kT(static_cast<std::size_t>(hd) * static_cast<std::size_t>(T));      // this head's keys, (hd, T)
    std::vector<F> ot(static_cast<std::size_t>(kTile) * static_cast<std::size_t>(hd));  // a tile of out rows
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < NH; h++) {
        const F* qb = qkv + static_cast<std::int64_t>(b) * T * C3 + static_cast<std::int64_t>(h) * hd;
        const F* kb = qb + C;
        const F* vb = qb + 2 * static_cast<std::int64_t>(C);
        const int* pb = pos + static_cast<std::int64_t>(b) * T;
        F* pbh = probs + (static_cast<std::int64_t>(b) * NH + h) * TT;
        F* ob = out + static_cast<std::int64_t>(b) * T * C + static_cast<std::int64_t>(h) * hd;
        attention_detail::transpose_head(kT.data(), kb, C3, hd, T);
        for (int i0 = 0; i0 < T; i0 += kTile) {
          const int i1 = std::min(T, i0 + kTile);
          for (int i = i0; i < i1; i++) {
            F* prow = pbh + static_cast<std::int64_t>(i) * T;
            const int pi = pb[i];
            const int lo = attention_detail::window_start(i, W);
            // scores of the visible keys lo .. i and their maximum
            attention_detail::rowdot(prow + lo, qb + i * C3, kT.data() + lo, hd, T, i + 1 - lo);
            F maxv = -std::numeric_limits<F>::infinity();
            for (int j = lo; j <= i; j++) {
              const F s = scale * prow[j] + attention_bias_value<F>(bias, h, pi, pb[j]);
              prow[j] = s;
              maxv = std::max(maxv, s);
            }
            // softmax (max subtracted), invisible entries zeroed
            F sum = F(0);
#pragma omp simd
            for (int j = lo; j <= i; j++) prow[j] = kexp(prow[j] - maxv);
#pragma omp simd reduction(+ : sum)
            for (int j = lo; j <= i; j++) sum += prow[j];
            const F inv = F(1) / sum;
            for (int j = lo; j <= i; j++) prow[j] *= inv;
            for (int j = 0; j < lo; j++) prow[j] = F(0);
            for (int j = i + 1; j < T; j++) prow[j] = F(0);
          }
          // out_i = sum_j p_ij v_j (j ascending), j outermost so that consecutive updates go to different rows
          std::fill(ot.begin(), ot.end(), F(0));
          for (int j = attention_detail::window_start(i0, W); j < i1; j++) {
            const F* vj = vb + j * C3;
            const int iend = static_cast<int>(std::min<std::int64_t>(i1, static_cast<std::int64_t>(j) + W));
            for (int i = std::max(i0, j); i < iend; i++)
              attention_detail::axpy(ot.data() + static_cast<std::int64_t>(i - i0) * hd,
                                     pbh[static_cast<std::int64_t>(i) * T + j], vj, hd);
          }
          for (int i = i0; i < i1; i++)
            std::copy_n(ot.data() + static_cast<std::int64_t>(i - i0) * hd, hd, ob + static_cast<std::int64_t>(i) * C);
        }
      }
    }
  }
}

template <class F, class Bias>
void backward_generic(F* dqkv, const F* dout, const F* qkv, const F* probs, const int* pos, Bias& bias, int B, int T,
                      int C, int NH, F scale, int window = 0) {
  const int hd = C / NH;
  const int W = attention_detail::effective_window(window, T);
  const std::int64_t C3 = 3 * static_cast<std::int64_t>(C);
  const std::int64_t TT = static_cast<std::int64_t>(T) * T;
  constexpr int kTile = attention_detail::kRowTile;

#pragma omp parallel
  {
    // per tile row: dp_ij, then overwritten by scale * ds_ij
    std::vector<F> dsb(static_cast<std::size_t>(kTile) * static_cast<std::size_t>(T));
    std::vector<F> vT(static_cast<std::size_t>(hd) * static_cast<std::size_t>(T));  // this head's values, (hd, T)
    // this head's dk and dv rows, (T, hd) each, and a tile of dq rows (kTile, hd): copied in from dqkv, accumulated,
    // copied back (same arithmetic as accumulating in place, without dqkv's large row stride)
    std::vector<F> dk(static_cast<std::size_t>(T) * static_cast<std::size_t>(hd));
    std::vector<F> dv(static_cast<std::size_t>(T) * static_cast<std::size_t>(hd));
    std::vector<F> dqt(static_cast<std::size_t>(kTile) * static_cast<std::size_t>(hd));
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < NH; h++) {
        const std::int64_t base = static_cast<std::int64_t>(b) * T * C3 + static_cast<std::int64_t>(h) * hd;
        const F* qb = qkv + base;
        const F* kb = qb + C;
        const F* vb = qb + 2 * static_cast<std::int64_t>(C);
        F* dqb = dqkv + base;
        F* dkb = dqb + C;
        F* dvb = dqb + 2 * static_cast<std::int64_t>(C);
        const int* pb = pos + static_cast<std::int64_t>(b) * T;
        const F* pbh = probs + (static_cast<std::int64_t>(b) * NH + h) * TT;
        const F* dob = dout + static_cast<std::int64_t>(b) * T * C + static_cast<std::int64_t>(h) * hd;
        attention_detail::transpose_head(vT.data(), vb, C3, hd, T);
        for (int j = 0; j < T; j++) {
          std::copy_n(dkb + j * C3, hd, dk.data() + static_cast<std::int64_t>(j) * hd);
          std::copy_n(dvb + j * C3, hd, dv.data() + static_cast<std::int64_t>(j) * hd);
        }
        for (int i0 = 0; i0 < T; i0 += kTile) {
          const int i1 = std::min(T, i0 + kTile);
          for (int i = i0; i < i1; i++) {
            const F* qi = qb + i * C3;
            const F* prow = pbh + static_cast<std::int64_t>(i) * T;
            const F* doi = dob + static_cast<std::int64_t>(i) * C;
            F* dsr = dsb.data() + static_cast<std::int64_t>(i - i0) * T;
            const int pi = pb[i];
            const int lo = attention_detail::window_start(i, W);

            // dp_ij = dout_i . v_j;  dv_j += p_ij dout_i;  sum_k p_ik dp_ik  (visible keys lo .. i)
            attention_detail::rowdot(dsr + lo, doi, vT.data() + lo, hd, T, i + 1 - lo);
            F pdp = F(0);
            for (int j = lo; j <= i; j++) {
              const F p = prow[j];
              attention_detail::axpy(dv.data() + static_cast<std::int64_t>(j) * hd, p, doi, hd);
              pdp += p * dsr[j];
            }
            // ds_ij = p_ij (dp_ij - sum);  dk_j += scale ds_ij q_i;  the bias gradient
            for (int j = lo; j <= i; j++) {
              const F ds = prow[j] * (dsr[j] - pdp);
              const F sds = scale * ds;
              dsr[j] = sds;
              attention_detail::axpy(dk.data() + static_cast<std::int64_t>(j) * hd, sds, qi, hd);
              if constexpr (Bias::kLearned) bias.accumulate(b, h, pi, pb[j], ds);
            }
          }
          // dq_i += scale ds_ij k_j (j ascending), j outermost so that consecutive updates go to different rows
          for (int i = i0; i < i1; i++)
            std::copy_n(dqb + i * C3, hd, dqt.data() + static_cast<std::int64_t>(i - i0) * hd);
          for (int j = attention_detail::window_start(i0, W); j < i1; j++) {
            const F* kj = kb + j * C3;
            const int iend = static_cast<int>(std::min<std::int64_t>(i1, static_cast<std::int64_t>(j) + W));
            for (int i = std::max(i0, j); i < iend; i++)
              attention_detail::axpy(dqt.data() + static_cast<std::int64_t>(i - i0) * hd,
                                     dsb[static_cast<std::size_t>(i - i0) * T + j], kj, hd);
          }
          for (int i = i0; i < i1; i++)
            std::copy_n(dqt.data() + static_cast<std::int64_t>(i - i0) * hd, hd, dqb + i * C3);
        }
        for (int j = 0; j < T; j++) {
          std::copy_n(dk.data() + static_cast<std::int64_t>(j) * hd, hd, dkb + j * C3);
          std::copy_n(dv.data() + static_cast<std::int64_t>(j) * hd, hd, dvb + j * C3);
        }
      }
    }
  }
}

}  // namespace attention_detail
}  // namespace stretch

#include "kernels/attention_fast.hpp"

namespace stretch {

template <class F, class Bias>
void attention_forward(F* out, F* probs, const F* qkv, const int* pos, const Bias& bias, int B, int T, int C, int NH,
                       F scale, int window) {
  attention_detail::check_shape(B, T, C, NH);
  attention_detail::check_window(window);
  if (B == 0 || T == 0) return;
  if constexpr (std::is_same_v<F, float>) {
    if ((C / NH) % 16 == 0 && cpu_paths().avx512) {
      attention_fast::forward(out, probs, qkv, pos, bias, B, T, C, NH, scale, window);
      return;
    }
  }
  attention_detail::forward_generic(out, probs, qkv, pos, bias, B, T, C, NH, scale, window);
}

template <class F, class Bias>
void attention_backward(F* dqkv, const F* dout, const F* qkv, const F* probs, const int* pos, Bias& bias, int B, int T,
                        int C, int NH, F scale, int window) {
  attention_detail::check_shape(B, T, C, NH);
  attention_detail::check_window(window);
  if (B == 0 || T == 0) return;
  if constexpr (std::is_same_v<F, float>) {
    if ((C / NH) % 16 == 0 && cpu_paths().avx512) {
      attention_fast::backward(dqkv, dout, qkv, probs, pos, bias, B, T, C, NH, scale, window);
      return;
    }
  }
  attention_detail::backward_generic(dqkv, dout, qkv, probs, pos, bias, B, T, C, NH, scale, window);
}

}  // namespace stretch
