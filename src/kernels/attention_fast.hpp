// Register-blocked AVX-512 float path of the causal attention kernel (contract: kernels/attention.hpp). Included
// by attention_impl.hpp, whose attention_forward / attention_backward use it for F = float when the head size hd
// is a multiple of 16 and the compiler targets AVX-512; the plain kernel of attention_impl.hpp (the reference) is
// used otherwise (double, other head sizes, other targets).
//
// Same parallel structure as the plain kernel: one task per (b, h) pair, static schedule, each task reads and writes
// only its own head's channels, probs block and (learned bias) partial sums, with a fixed arithmetic order, so the
// results are bitwise identical for any thread count. Inside a task the products are register tiles:
//   scores  S = X Y^T for kRows rows x 32 keys (2 zmm per row), the loop over d = 0 .. hd-1 inside (Y transposed
//           into a (hd, Tp) zero-padded scratch block, Tp = T rounded up to 32, rows padded by one cache line;
//           16 x 16 register transposes), summed d ascending;
//   sums    Y_r += sum_s a(r, s) X_s for kRows output rows x up to 32 channels in registers, streaming over s
//           ascending: out = P V and dq += ds K (rows = queries, s = keys j <= i), dv += P^T dout and
//           dk += ds^T Q (rows = keys, s = queries i >= j). The causal triangle of a row block is summed by
//           single-row tiles in the same ascending order (the bulk of the range first or last, as s requires), so no
//           entry above the diagonal of probs is read.
// The softmax, the bias (called once per visible score) and the bias gradient are computed per row as in the plain
// kernel; sums over a row (max, softmax denominator, sum_k p_ik dp_ik) are vectorized (fixed order, independent of
// the thread count).
#pragma once
#ifdef __AVX512F__
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/vecmath.hpp"

namespace stretch {
namespace attention_fast {

inline constexpr int kRows = 8;   // rows per register tile
inline constexpr int kKeys = 32;  // keys per score tile (2 zmm)

// S[r * lds + j] = sum_{d < hd} X[r * ldx + d] * YT[d * ldt + j] for r < R, j < ncols (ncols a multiple of 32).
template <int R>
inline void scores_tile(float* __restrict__ S, int lds, const float* __restrict__ X, std::int64_t ldx,
                        const float* __restrict__ YT, int ldt, int hd, int ncols) {
  for (int j0 = 0; j0 < ncols; j0 += kKeys) {
    __m512 a0[R], a1[R];
    for (int r = 0; r < R; r++) {
      a0[r] = _mm512_setzero_ps();
      a1[r] = _mm512_setzero_ps();
    }
    const float* y = YT + j0;
    for (int d = 0; d < hd; d++, y += ldt) {
      const __m512 y0 = _mm512_loadu_ps(y);
      const __m512 y1 = _mm512_loadu_ps(y + 16);
      for (int r = 0; r < R; r++) {
        const __m512 x = _mm512_set1_ps(X[r * ldx + d]);
        a0[r] = _mm512_fmadd_ps(x, y0, a0[r]);
        a1[r] = _mm512_fmadd_ps(x, y1, a1[r]);
      }
    }
    for (int r = 0; r < R; r++) {
      _mm512_storeu_ps(S + r * lds + j0, a0[r]);
      _mm512_storeu_ps(S + r * lds + j0 + 16, a1[r]);
    }
  }
}

// Y[r * ldy + c] (= 0 if !add, then) += sum_{s0 <= s < s1} A[r * ar + s * as] * X[s * ldx + c], s ascending,
// for r < R and the 16 * NV channels c starting at Y, X.
template <int R, int NV>
inline void sum_tile(float* Y, std::int64_t ldy, const float* __restrict__ A, std::int64_t ar, std::int64_t as,
                     const float* __restrict__ X, std::int64_t ldx, int s0, int s1, bool add) {
  __m512 acc[R][NV];
  for (int r = 0; r < R; r++)
    for (int v = 0; v < NV; v++) acc[r][v] = add ? _mm512_loadu_ps(Y + r * ldy + 16 * v) : _mm512_setzero_ps();
  for (int s = s0; s < s1; s++) {
    const float* xs = X + s * ldx;
    __m512 x[NV];
    for (int v = 0; v < NV; v++) x[v] = _mm512_loadu_ps(xs + 16 * v);
    const float* as_ = A + s * as;
    for (int r = 0; r < R; r++) {
      const __m512 a = _mm512_set1_ps(as_[r * ar]);
      for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(a, x[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int v = 0; v < NV; v++) _mm512_storeu_ps(Y + r * ldy + 16 * v, acc[r][v]);
}

// sum_tile over all hd channels in chunks of 32 (and a last chunk of 16).
template <int R>
inline void sum_rows(float* Y, std::int64_t ldy, const float* A, std::int64_t ar, std::int64_t as, const float* X,
                     std::int64_t ldx, int s0, int s1, int hd, bool add) {
  int c = 0;
  for (; c + 32 <= hd; c += 32) sum_tile<R, 2>(Y + c, ldy, A, ar, as, X + c, ldx, s0, s1, add);
  if (c < hd) sum_tile<R, 1>(Y + c, ldy, A, ar, as, X + c, ldx, s0, s1, add);
}

// Query-side sums, rows i0 .. i0+R-1, keys j <= i ascending:
//   Y_i (= 0 if !add, then) += sum_{j <= i} A[i * lda + j] X_j.
template <int R>
inline void query_sum(float* Y, std::int64_t ldy, const float* A, std::int64_t lda, const float* X, std::int64_t ldx,
                      int i0, int hd, bool add) {
  // keys 0 .. i0 are visible to every row of the tile; then each row's triangle part i0+1 .. i
  sum_rows<R>(Y + i0 * ldy, ldy, A + i0 * lda, lda, 1, X, ldx, 0, i0 + 1, hd, add);
  for (int r = 1; r < R; r++)
    sum_rows<1>(Y + (i0 + r) * ldy, ldy, A + (i0 + r) * lda, lda, 1, X, ldx, i0 + 1, i0 + r + 1, hd, true);
}

// Key-side sums, rows (keys) j0 .. j0+R-1, queries i >= j ascending up to T-1:
//   Y_j += sum_{j <= i < T} A[i * lda + j] X_i.
template <int R>
inline void key_sum(float* Y, std::int64_t ldy, const float* A, std::int64_t lda, const float* X, std::int64_t ldx,
                    int j0, int T, int hd) {
  // each row's triangle part j .. j0+R-2 first; then queries j0+R-1 .. T-1, visible to every key of the tile
  for (int r = 0; r + 1 < R; r++)
    sum_rows<1>(Y + (j0 + r) * ldy, ldy, A + j0 + r, 1, lda, X, ldx, j0 + r, j0 + R - 1, hd, true);
  sum_rows<R>(Y + j0 * ldy, ldy, A + j0, 1, lda, X, ldx, j0 + R - 1, T, hd, true);
}

// In-register transpose of 16 rows of 16 floats: r[k] lane l  <-  r[l] lane k. Four stages, one per bit s of the
// index: rows k and k + s (bit s of k clear) exchange the entries whose column has bit s set. Written with
// __builtin_shuffle (vpermt2ps) rather than the unpack / shuffle_f32x4 intrinsics, whose GCC 12 definitions trigger
// false -Wmaybe-uninitialized warnings.
template <int S>
inline void transpose16_stage(__m512 r[16]) {
  __v16si m0, m1;
  for (int l = 0; l < 16; l++) {
    m0[l] = (l & S) ? 16 + l - S : l;
    m1[l] = (l & S) ? 16 + l : l + S;
  }
  for (int k = 0; k < 16; k++)
    if (!(k & S)) {
      const __m512 a = r[k], b = r[k + S];
      r[k] = __builtin_shuffle(a, b, m0);
      r[k + S] = __builtin_shuffle(a, b, m1);
    }
}

inline void transpose16(__m512 r[16]) {
  transpose16_stage<8>(r);
  transpose16_stage<4>(r);
  transpose16_stage<2>(r);
  transpose16_stage<1>(r);
}

// YT (hd, Tp) with row stride ldt = the (T, hd) rows of one head (row stride ld), columns T .. Tp-1 zero
// (hd a multiple of 16: 16 x 16 blocks transposed in registers, the last T mod 16 rows one by one).
inline void transpose_pad(float* __restrict__ YT, int ldt, const float* __restrict__ Y, std::int64_t ld, int hd, int T,
                          int Tp) {
  int j0 = 0;
  for (; j0 + 16 <= T; j0 += 16)
    for (int d0 = 0; d0 < hd; d0 += 16) {
      __m512 r[16];
      for (int k = 0; k < 16; k++) r[k] = _mm512_loadu_ps(Y + (j0 + k) * ld + d0);
      transpose16(r);
      for (int k = 0; k < 16; k++) _mm512_storeu_ps(YT + static_cast<std::int64_t>(d0 + k) * ldt + j0, r[k]);
    }
  for (int j = j0; j < T; j++)
    for (int d = 0; d < hd; d++) YT[static_cast<std::int64_t>(d) * ldt + j] = Y[j * ld + d];
  for (int d = 0; d < hd; d++)
    for (int j = T; j < Tp; j++) YT[static_cast<std::int64_t>(d) * ldt + j] = 0.0f;
}

inline int round_up(int n, int m) { return (n + m - 1) / m * m; }

// Leading dimension of a transposed (hd, Tp) block: Tp plus one cache line, so that the hd rows (read together by
// scores_tile and written together by transpose_pad) do not all map to the same few L1 sets when Tp * 4 bytes is
// a multiple of 1 KiB.
inline int transposed_ld(int Tp) { return Tp + 16; }

// One query row of the forward pass: prow[j] = softmax_j(scale * srow[j] + bias) for j <= i, 0 for j > i.
template <class Bias>
inline void softmax_row(float* __restrict__ prow, const float* __restrict__ srow, const int* __restrict__ pb,
                        const Bias& bias, int h, int i, int T, float scale) {
  const int pi = pb[i];
  const int n = i + 1;
  for (int j = 0; j < n; j++) prow[j] = scale * srow[j] + attention_bias_value<float>(bias, h, pi, pb[j]);
  // the maximum: 16 lanes (j mod 16, vector compare-select; the last chunk masked with -inf) then across them
  // (max is exact, so the order does not matter)
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 mv = ninf;
  int j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m512 x = _mm512_loadu_ps(prow + j);
    mv = x > mv ? x : mv;
  }
  if (j < n) {
    const __m512 x = _mm512_mask_loadu_ps(ninf, static_cast<__mmask16>((1u << (n - j)) - 1u), prow + j);
    mv = x > mv ? x : mv;
  }
  float maxv = mv[0];
  for (int l = 1; l < 16; l++) maxv = mv[l] > maxv ? mv[l] : maxv;
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int j = 0; j < n; j++) {
    const float e = kexp(prow[j] - maxv);
    prow[j] = e;
    sum += e;
  }
  const float inv = 1.0f / sum;
#pragma omp simd
  for (int j = 0; j < n; j++) prow[j] *= inv;
  for (int j = n; j < T; j++) prow[j] = 0.0f;
}

template <class Bias>
void forward(float* out, float* probs, const float* qkv, const int* pos, const Bias& bias, int B, int T, int C, int NH,
             float scale) {
  const int hd = C / NH;
  const std::int64_t C3 = 3 * static_cast<std::int64_t>(C);
  const std::int64_t TT = static_cast<std::int64_t>(T) * T;
  const int Tp = round_up(T, kKeys);
  const int ldt = transposed_ld(Tp);

#pragma omp parallel
  {
    std::vector<float> kT(static_cast<std::size_t>(hd) * static_cast<std::size_t>(ldt));  // keys, (hd, Tp)
    std::vector<float> S(static_cast<std::size_t>(kRows) * static_cast<std::size_t>(Tp));  // a tile of raw scores
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < NH; h++) {
        const float* qb = qkv + static_cast<std::int64_t>(b) * T * C3 + static_cast<std::int64_t>(h) * hd;
        const float* kb = qb + C;
        const float* vb = qb + 2 * static_cast<std::int64_t>(C);
        const int* pb = pos + static_cast<std::int64_t>(b) * T;
        float* pbh = probs + (static_cast<std::int64_t>(b) * NH + h) * TT;
        float* ob = out + static_cast<std::int64_t>(b) * T * C + static_cast<std::int64_t>(h) * hd;
        transpose_pad(kT.data(), ldt, kb, C3, hd, T, Tp);
        int i0 = 0;
        for (; i0 + kRows <= T; i0 += kRows) {
          scores_tile<kRows>(S.data(), Tp, qb + i0 * C3, C3, kT.data(), ldt, hd, round_up(i0 + kRows, kKeys));
          for (int r = 0; r < kRows; r++)
            softmax_row(pbh + static_cast<std::int64_t>(i0 + r) * T, S.data() + r * Tp, pb, bias, h, i0 + r, T, scale);
          query_sum<kRows>(ob, C, pbh, T, vb, C3, i0, hd, false);
        }
        for (; i0 < T; i0++) {
          scores_tile<1>(S.data(), Tp, qb + i0 * C3, C3, kT.data(), ldt, hd, round_up(i0 + 1, kKeys));
          softmax_row(pbh + static_cast<std::int64_t>(i0) * T, S.data(), pb, bias, h, i0, T, scale);
          query_sum<1>(ob, C, pbh, T, vb, C3, i0, hd, false);
        }
      }
    }
  }
}

// One query row of the backward pass: from dp_ij = dout_i . v_j (dprow), dsrow[j] = scale * p_ij (dp_ij - sum_k
// p_ik dp_ik) for j <= i, and the bias gradient p_ij (dp_ij - ...) for j ascending.
template <class Bias>
inline void dscore_row(float* __restrict__ dsrow, const float* __restrict__ dprow, const float* __restrict__ prow,
                       const int* __restrict__ pb, Bias& bias, int b, int h, int i, float scale) {
  const int n = i + 1;
  float pdp = 0.0f;
#pragma omp simd reduction(+ : pdp)
  for (int j = 0; j < n; j++) pdp += prow[j] * dprow[j];
  if constexpr (Bias::kLearned) {
    const int pi = pb[i];
    for (int j = 0; j < n; j++) {
      const float ds = prow[j] * (dprow[j] - pdp);
      dsrow[j] = scale * ds;
      bias.accumulate(b, h, pi, pb[j], ds);
    }
  } else {
#pragma omp simd
    for (int j = 0; j < n; j++) dsrow[j] = scale * (prow[j] * (dprow[j] - pdp));
  }
}

template <class Bias>
void backward(float* dqkv, const float* dout, const float* qkv, const float* probs, const int* pos, Bias& bias, int B,
              int T, int C, int NH, float scale) {
  const int hd = C / NH;
  const std::int64_t C3 = 3 * static_cast<std::int64_t>(C);
  const std::int64_t TT = static_cast<std::int64_t>(T) * T;
  const int Tp = round_up(T, kKeys);
  const int ldt = transposed_ld(Tp);

#pragma omp parallel
  {
    std::vector<float> vT(static_cast<std::size_t>(hd) * static_cast<std::size_t>(ldt));  // values, (hd, Tp)
    std::vector<float> S(static_cast<std::size_t>(kRows) * static_cast<std::size_t>(Tp));  // a tile of dp_ij
    std::vector<float> ds(static_cast<std::size_t>(TT));  // scale * ds_ij (T, T), entries j <= i only
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < NH; h++) {
        const std::int64_t base = static_cast<std::int64_t>(b) * T * C3 + static_cast<std::int64_t>(h) * hd;
        const float* qb = qkv + base;
        const float* kb = qb + C;
        const float* vb = qb + 2 * static_cast<std::int64_t>(C);
        float* dqb = dqkv + base;
        float* dkb = dqb + C;
        float* dvb = dqb + 2 * static_cast<std::int64_t>(C);
        const int* pb = pos + static_cast<std::int64_t>(b) * T;
        const float* pbh = probs + (static_cast<std::int64_t>(b) * NH + h) * TT;
        const float* dob = dout + static_cast<std::int64_t>(b) * T * C + static_cast<std::int64_t>(h) * hd;
        float* dsb = ds.data();
        transpose_pad(vT.data(), ldt, vb, C3, hd, T, Tp);
        // per query tile: dp, ds (and the bias gradient, i then j ascending), dq_i += sum_j ds_ij k_j
        int i0 = 0;
        for (; i0 + kRows <= T; i0 += kRows) {
          scores_tile<kRows>(S.data(), Tp, dob + i0 * static_cast<std::int64_t>(C), C, vT.data(), ldt, hd,
                             round_up(i0 + kRows, kKeys));
          for (int r = 0; r < kRows; r++) {
            const int i = i0 + r;
            dscore_row(dsb + static_cast<std::int64_t>(i) * T, S.data() + r * Tp, pbh + static_cast<std::int64_t>(i) * T,
                       pb, bias, b, h, i, scale);
          }
          query_sum<kRows>(dqb, C3, dsb, T, kb, C3, i0, hd, true);
        }
        for (; i0 < T; i0++) {
          scores_tile<1>(S.data(), Tp, dob + i0 * static_cast<std::int64_t>(C), C, vT.data(), ldt, hd,
                         round_up(i0 + 1, kKeys));
          dscore_row(dsb + static_cast<std::int64_t>(i0) * T, S.data(), pbh + static_cast<std::int64_t>(i0) * T, pb,
                     bias, b, h, i0, scale);
          query_sum<1>(dqb, C3, dsb, T, kb, C3, i0, hd, true);
        }
        // per key tile: dv_j += sum_i p_ij dout_i, dk_j += sum_i ds_ij q_i (i ascending)
        int j0 = 0;
        for (; j0 + kRows <= T; j0 += kRows) {
          key_sum<kRows>(dvb, C3, pbh, T, dob, C, j0, T, hd);
          key_sum<kRows>(dkb, C3, dsb, T, qb, C3, j0, T, hd);
        }
        for (; j0 < T; j0++) {
          key_sum<1>(dvb, C3, pbh, T, dob, C, j0, T, hd);
          key_sum<1>(dkb, C3, dsb, T, qb, C3, j0, T, hd);
        }
      }
    }
  }
}

}  // namespace attention_fast
}  // namespace stretch

#endif  // __AVX512F__
