// Register-blocked AVX-512 float path of the causal attention kernel (contract: kernels/attention.hpp). Included
// by attention_impl.hpp, whose attention_forward / attention_backward use it for F = float when the head size hd
// is a multiple of 16 and the CPU has AVX-512 (core/cpu.hpp, decided at run time); the plain kernel of
// attention_impl.hpp (the reference) is used otherwise (double, other head sizes, other CPUs).
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
//
// Sliding window (attention.hpp): with W = effective_window(window, T), query i sees keys lo(i) = max(0, i-W+1) .. i.
// Score tiles start at the 32-key tile holding lo(i0) of the tile's first row, softmax / dscore rows run over
// lo(i) .. i, and the sums split each row's (or key's) range into the part shared by the whole register tile and
// single-row edges before and after it, all in ascending order: no entry outside the window of probs or of the ds
// scratch is read, and the work is O(T * W) per (b, h). With W = T everything reduces to the causal kernel.
//
// Instruction set: every function here carries STRETCH_TARGET_AVX512 (core/cpu.hpp), so the AVX-512 code is compiled
// whatever the build target, and attention_impl.hpp calls it only when cpu_paths().avx512 is true.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/cpu.hpp"
#include "kernels/vecmath.hpp"

namespace stretch {
namespace attention_fast {

inline constexpr int kRows = 8;   // rows per register tile
inline constexpr int kKeys = 32;  // keys per score tile (2 zmm)

// S[r * lds + j] = sum_{d < hd} X[r * ldx + d] * YT[d * ldt + j] for r < R, j < ncols (ncols a multiple of 32).
template <int R>
STRETCH_TARGET_AVX512
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
STRETCH_TARGET_AVX512
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
STRETCH_TARGET_AVX512
inline void sum_rows(float* Y, std::int64_t ldy, const float* A, std::int64_t ar, std::int64_t as, const float* X,
                     std::int64_t ldx, int s0, int s1, int hd, bool add) {
  int c = 0;
  for (; c + 32 <= hd; c += 32) sum_tile<R, 2>(Y + c, ldy, A, ar, as, X + c, ldx, s0, s1, add);
  if (c < hd) sum_tile<R, 1>(Y + c, ldy, A, ar, as, X + c, ldx, s0, s1, add);
}

STRETCH_TARGET_AVX512
inline int window_lo(int i, int W) { return i - W + 1 > 0 ? i - W + 1 : 0; }

// Query-side sums, rows i0 .. i0+R-1, visible keys lo(i) <= j <= i ascending (W = effective window, see top):
//   Y_i (= 0 if !add, then) += sum_{lo(i) <= j <= i} A[i * lda + j] X_j.
template <int R>
STRETCH_TARGET_AVX512
inline void query_sum(float* Y, std::int64_t ldy, const float* A, std::int64_t lda, const float* X, std::int64_t ldx,
                      int i0, int hd, bool add, int W) {
  const int shared_lo = window_lo(i0 + R - 1, W);  // the last row's first key
  if (shared_lo > i0) {  // window narrower than the tile: no key is visible to every row; row by row
    for (int r = 0; r < R; r++)
      sum_rows<1>(Y + (i0 + r) * ldy, ldy, A + (i0 + r) * lda, lda, 1, X, ldx, window_lo(i0 + r, W), i0 + r + 1, hd,
                  add);
    return;
  }
  if (window_lo(i0, W) < shared_lo) {
    // the rows whose window starts before shared_lo: their leading keys first (into zeroed rows when !add)
    if (!add)
      for (int r = 0; r < R; r++) std::fill_n(Y + (i0 + r) * ldy, hd, 0.0f);
    for (int r = 0; r + 1 < R; r++) {
      const int lo = window_lo(i0 + r, W);
      if (lo < shared_lo)
        sum_rows<1>(Y + (i0 + r) * ldy, ldy, A + (i0 + r) * lda, lda, 1, X, ldx, lo, shared_lo, hd, true);
    }
    add = true;
  }
  // keys shared_lo .. i0 are visible to every row of the tile; then each row's triangle part i0+1 .. i
  sum_rows<R>(Y + i0 * ldy, ldy, A + i0 * lda, lda, 1, X, ldx, shared_lo, i0 + 1, hd, add);
  for (int r = 1; r < R; r++)
    sum_rows<1>(Y + (i0 + r) * ldy, ldy, A + (i0 + r) * lda, lda, 1, X, ldx, i0 + 1, i0 + r + 1, hd, true);
}

// Key-side sums, rows (keys) j0 .. j0+R-1, queries j <= i < min(T, j + W) ascending:
//   Y_j += sum_{j <= i < min(T, j + W)} A[i * lda + j] X_i.
template <int R>
STRETCH_TARGET_AVX512
inline void key_sum(float* Y, std::int64_t ldy, const float* A, std::int64_t lda, const float* X, std::int64_t ldx,
                    int j0, int T, int hd, int W) {
  auto hi = [&](int j) { return static_cast<int>(std::min<std::int64_t>(T, static_cast<std::int64_t>(j) + W)); };
  if (W < R) {  // window narrower than the tile: key by key
    for (int r = 0; r < R; r++)
      sum_rows<1>(Y + (j0 + r) * ldy, ldy, A + j0 + r, 1, lda, X, ldx, j0 + r, hi(j0 + r), hd, true);
    return;
  }
  // each row's triangle part j .. j0+R-2 first; then queries j0+R-1 .. hi(j0)-1, visible to every key of the tile;
  // then each key's trailing part hi(j0) .. hi(j)-1 (empty without a window)
  for (int r = 0; r + 1 < R; r++)
    sum_rows<1>(Y + (j0 + r) * ldy, ldy, A + j0 + r, 1, lda, X, ldx, j0 + r, j0 + R - 1, hd, true);
  const int shared_hi = hi(j0);
  sum_rows<R>(Y + j0 * ldy, ldy, A + j0, 1, lda, X, ldx, j0 + R - 1, shared_hi, hd, true);
  for (int r = 1; r < R; r++)
    if (hi(j0 + r) > shared_hi)
      sum_rows<1>(Y + (j0 + r) * ldy, ldy, A + j0 + r, 1, lda, X, ldx, shared_hi, hi(j0 + r), hd, true);
}

// In-register transpose of 16 rows of 16 floats: r[k] lane l  <-  r[l] lane k. Four stages, one per bit s of the
// index: rows k and k + s (bit s of k clear) exchange the entries whose column has bit s set, with two-source
// permutes (vpermt2ps; the unpack / shuffle_f32x4 intrinsics' GCC 12 definitions trigger false
// -Wmaybe-uninitialized warnings).
template <int S>
STRETCH_TARGET_AVX512
inline void transpose16_stage(__m512 r[16]) {
  // index l < 16 takes lane l of the first source, 16 + l lane l of the second
  alignas(64) std::int32_t m0[16], m1[16];
  for (int l = 0; l < 16; l++) {
    m0[l] = (l & S) ? 16 + l - S : l;
    m1[l] = (l & S) ? 16 + l : l + S;
  }
  const __m512i i0 = _mm512_load_si512(m0), i1 = _mm512_load_si512(m1);
  for (int k = 0; k < 16; k++)
    if (!(k & S)) {
      const __m512 a = r[k], b = r[k + S];
      r[k] = _mm512_permutex2var_ps(a, i0, b);
      r[k + S] = _mm512_permutex2var_ps(a, i1, b);
    }
}

STRETCH_TARGET_AVX512
inline void transpose16(__m512 r[16]) {
  transpose16_stage<8>(r);
  transpose16_stage<4>(r);
  transpose16_stage<2>(r);
  transpose16_stage<1>(r);
}

// YT (hd, Tp) with row stride ldt = the (T, hd) rows of one head (row stride ld), columns T .. Tp-1 zero
// (hd a multiple of 16: 16 x 16 blocks transposed in registers, the last T mod 16 rows one by one).
STRETCH_TARGET_AVX512
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

STRETCH_TARGET_AVX512
inline int round_up(int n, int m) { return (n + m - 1) / m * m; }

// Leading dimension of a transposed (hd, Tp) block: Tp plus one cache line, so that the hd rows (read together by
// scores_tile and written together by transpose_pad) do not all map to the same few L1 sets when Tp * 4 bytes is
// a multiple of 1 KiB.
STRETCH_TARGET_AVX512
inline int transposed_ld(int Tp) { return Tp + 16; }

// One query row of the forward pass: prow[j] = softmax_j(scale * srow[j] + bias) for lo <= j <= i, 0 elsewhere.
template <class Bias>
STRETCH_TARGET_AVX512
inline void softmax_row(float* __restrict__ prow, const float* __restrict__ srow, const int* __restrict__ pb,
                        const Bias& bias, int h, int i, int T, float scale, int lo) {
  const int pi = pb[i];
  const int n = i + 1;
  for (int j = 0; j < lo; j++) prow[j] = 0.0f;
  for (int j = lo; j < n; j++) prow[j] = scale * srow[j] + attention_bias_value<float>(bias, h, pi, pb[j]);
  // the maximum: 16 lanes (j mod 16, vector compare-select; the last chunk masked with -inf) then across them
  // (max is exact, so the order does not matter)
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 mv = ninf;
  int j = lo;
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
  for (int j = lo; j < n; j++) {
    const float e = kexp(prow[j] - maxv);
    prow[j] = e;
    sum += e;
  }
  const float inv = 1.0f / sum;
#pragma omp simd
  for (int j = lo; j < n; j++) prow[j] *= inv;
  for (int j = n; j < T; j++) prow[j] = 0.0f;
}

template <class Bias>
STRETCH_TARGET_AVX512
void forward(float* out, float* probs, const float* qkv, const int* pos, const Bias& bias, int B, int T, int C, int NH,
             float scale, int window = 0) {
  const int hd = C / NH;
  const int W = window > 0 && window < T ? window : T;
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
          const int c0 = window_lo(i0, W) / kKeys * kKeys;  // first score column the tile needs
          scores_tile<kRows>(S.data() + c0, Tp, qb + i0 * C3, C3, kT.data() + c0, ldt, hd,
                             round_up(i0 + kRows, kKeys) - c0);
          for (int r = 0; r < kRows; r++)
            softmax_row(pbh + static_cast<std::int64_t>(i0 + r) * T, S.data() + r * Tp, pb, bias, h, i0 + r, T, scale,
                        window_lo(i0 + r, W));
          query_sum<kRows>(ob, C, pbh, T, vb, C3, i0, hd, false, W);
        }
        for (; i0 < T; i0++) {
          const int c0 = window_lo(i0, W) / kKeys * kKeys;
          scores_tile<1>(S.data() + c0, Tp, qb + i0 * C3, C3, kT.data() + c0, ldt, hd, round_up(i0 + 1, kKeys) - c0);
          softmax_row(pbh + static_cast<std::int64_t>(i0) * T, S.data(), pb, bias, h, i0, T, scale, window_lo(i0, W));
          query_sum<1>(ob, C, pbh, T, vb, C3, i0, hd, false, W);
        }
      }
    }
  }
}

// One query row of the backward pass: from dp_ij = dout_i . v_j (dprow), dsrow[j] = scale * p_ij (dp_ij - sum_k
// p_ik dp_ik) for lo <= j <= i, and the bias gradient p_ij (dp_ij - ...) for j ascending (dsrow[j < lo] not written).
template <class Bias>
STRETCH_TARGET_AVX512
inline void dscore_row(float* __restrict__ dsrow, const float* __restrict__ dprow, const float* __restrict__ prow,
                       const int* __restrict__ pb, Bias& bias, int b, int h, int i, float scale, int lo) {
  const int n = i + 1;
  float pdp = 0.0f;
#pragma omp simd reduction(+ : pdp)
  for (int j = lo; j < n; j++) pdp += prow[j] * dprow[j];
  if constexpr (Bias::kLearned) {
    const int pi = pb[i];
    for (int j = lo; j < n; j++) {
      const float ds = prow[j] * (dprow[j] - pdp);
      dsrow[j] = scale * ds;
      bias.accumulate(b, h, pi, pb[j], ds);
    }
  } else {
#pragma omp simd
    for (int j = lo; j < n; j++) dsrow[j] = scale * (prow[j] * (dprow[j] - pdp));
  }
}

template <class Bias>
STRETCH_TARGET_AVX512
void backward(float* dqkv, const float* dout, const float* qkv, const float* probs, const int* pos, Bias& bias, int B,
              int T, int C, int NH, float scale, int window = 0) {
  const int hd = C / NH;
  const int W = window > 0 && window < T ? window : T;
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
          const int c0 = window_lo(i0, W) / kKeys * kKeys;  // first dp column the tile needs
          scores_tile<kRows>(S.data() + c0, Tp, dob + i0 * static_cast<std::int64_t>(C), C, vT.data() + c0, ldt, hd,
                             round_up(i0 + kRows, kKeys) - c0);
          for (int r = 0; r < kRows; r++) {
            const int i = i0 + r;
            dscore_row(dsb + static_cast<std::int64_t>(i) * T, S.data() + r * Tp, pbh + static_cast<std::int64_t>(i) * T,
                       pb, bias, b, h, i, scale, window_lo(i, W));
          }
          query_sum<kRows>(dqb, C3, dsb, T, kb, C3, i0, hd, true, W);
        }
        for (; i0 < T; i0++) {
          const int c0 = window_lo(i0, W) / kKeys * kKeys;
          scores_tile<1>(S.data() + c0, Tp, dob + i0 * static_cast<std::int64_t>(C), C, vT.data() + c0, ldt, hd,
                         round_up(i0 + 1, kKeys) - c0);
          dscore_row(dsb + static_cast<std::int64_t>(i0) * T, S.data(), pbh + static_cast<std::int64_t>(i0) * T, pb,
                     bias, b, h, i0, scale, window_lo(i0, W));
          query_sum<1>(dqb, C3, dsb, T, kb, C3, i0, hd, true, W);
        }
        // per key tile: dv_j += sum_i p_ij dout_i, dk_j += sum_i ds_ij q_i (i ascending, j <= i < j + W)
        int j0 = 0;
        for (; j0 + kRows <= T; j0 += kRows) {
          key_sum<kRows>(dvb, C3, pbh, T, dob, C, j0, T, hd, W);
          key_sum<kRows>(dkb, C3, dsb, T, qb, C3, j0, T, hd, W);
        }
        for (; j0 < T; j0++) {
          key_sum<1>(dvb, C3, pbh, T, dob, C, j0, T, hd, W);
          key_sum<1>(dkb, C3, dsb, T, qb, C3, j0, T, hd, W);
        }
      }
    }
  }
}

}  // namespace attention_fast
}  // namespace stretch
