// Tiled, online-softmax ("flash-style") causal attention, forward and backward: the same results as
// attention_forward / attention_backward (kernels/attention.hpp, the reference) without the (B, NH, T, T)
// probabilities, so training memory grows linearly with T.
//
//   out (B, T, C) = causal softmax(scale * q k^T + bias) v
//   lse (B, NH, T) (optional forward output, needed by the backward pass) = log sum_j exp(s_ij), per row
//
// Same contract as attention_forward: qkv (B, T, 3C), pos (B, T), s_ij = scale * (q_i . k_j) + bias(h, pos_i, pos_j)
// for j visible to i (by index: j <= i and, with a sliding window w > 0, i - j < w), the bias functor called once
// per visible score. Nothing of size T x T is stored.
//
// Algorithm. Tasks are (b, h, block of kBlockQ query rows), flattened and run with a dynamic schedule, the blocks
// with the most keys first (so B = 1 with a long T keeps every thread busy and balanced). A task streams over
// blocks of kBlockK keys j < i1 (the end of its query block), keeping per row a running max m_i, running sum l_i
// and output accumulator o_i (hd values): per key block
//   S = Q K^T (register tiles of kRows rows x 2 vectors of keys, the loop over hd inside, summed d = 0 .. hd-1),
//   s = scale * S + bias, m_new = max(m_old, max_j s), alpha = exp(m_old - m_new), p = exp(s - m_new),
//   l = alpha l + sum_j p, o = alpha o + P V (register tiles of kRows rows x up to 2 vectors of channels),
// and finally out_i = o_i / l_i. Work memory per thread is O(kBlockQ * (kBlockK + hd)), independent of T.
//
// Sliding window w (0 = none): with W = w (T when w is 0 or >= T), row i sees keys lo(i) = max(0, i - W + 1) .. i.
// Shifted sparse attention (LongLoRA's S2-Attn, a training option; `group` G > 0): row i of head h sees only the keys
// of its group, lo(h, i) = the group's start (KeyRange below), the second half of the heads with groups shifted by
// G/2. Unlike LongLoRA's implementation, which rolls the shifted heads' tokens by G/2 so that the last group wraps
// around to the sequence's first G/2 tokens (which then see the last G/2: the future), the shifted groups here stop
// at the sequence's ends ([0, G/2) is a group of its own), so the mask stays causal.
// A query block starts streaming at the key block holding lo(i0) of its first row, so key blocks entirely before
// the window are never loaded and the cost is O(T * (W + kBlockQ + kBlockK)) per (b, h) instead of O(T^2); inside
// a block, register tiles of scores entirely before their rows' windows are skipped and each row's softmax and P V
// sums start at its own lo(i) (entries before it are exactly 0). With W = T the kernel is the causal one.
//
// Backward (FlashAttention-2's recomputation, Dao 2023). One task per (b, h), dynamic schedule. The task walks its
// query blocks i (kBlockQ rows) and, inside, the key blocks j visible to them, recomputing
//   S = Q_i K_j^T, P = exp(scale * S + bias - lse_i)            (the forward's probabilities, from the saved lse)
//   dP = dO_i V_j^T, dS = P * (dP - D_i) with D_i = dO_i . O_i   (= sum_j P_ij dP_ij, without a second pass)
//   dQ_i += scale dS K_j, dK_j += scale dS^T Q_i, dV_j += P^T dO_i, bias gradient += dS (learned biases)
// with the same register tiles as the forward (dS^T and P^T transposed into scratch for the key-row sums). dK, dV
// accumulate in per-task (T, hd) buffers and dQ in a (kBlockQ, hd) block, all added to dqkv at the end, so work
// memory per thread is O(T * hd + kBlockQ * kBlockK): linear in T. Key blocks are gathered from the strided qkv
// and transposed once per call (forward) or per task (backward), not once per query block that reads them. Cost: 5 products of the causal triangle
// (2 in the forward), i.e. about 2.5x the forward's.
//
// Two score sets (FarScores, forward only; Self-Extend and ReRoPE, position/extension.hpp): with far.qk set, a
// second copy of q and k rotated at remapped positions, far.qk (B, T, 2C) = [q' | k'], gives the score of every
// pair with i - j >= far.window: s_ij = scale * (q'_i . k'_j) + bias; pairs with i - j < far.window keep
// scale * (q_i . k_j) + bias. The choice is made per register tile of scores: a tile wholly inside the window
// computes only q k, a tile wholly beyond it only q' k', a tile across the boundary both and picks per score. Far
// keys are packed like the near ones (another T C values). far.window >= T makes every pair near: the plain kernel.
//
// Determinism: every query row (forward) and every (b, h) (backward) is computed by one task, over the same blocks
// in the same order, with the same arithmetic whatever the thread count, so results are bitwise identical for any
// number of threads.
// The exponential is kexp (vecmath.hpp): exp_fast for float, std::exp for double.
//
// Instruction sets (core/cpu.hpp): the kernels live in attention_tiled_body.hpp, included here once for the build
// target (namespace tiled_build_target; 64-byte vectors where the target has AVX-512, else 32-byte ones, since a
// 64-byte GCC vector on AVX2 is split into slow code) and, in the portable build, once more with the AVX-512
// target attribute (namespace tiled_avx512), which the entry points below call where cpu_paths().avx512. The copies
// agree to float rounding (a softmax row's sum is reduced over 8 or 16 lanes), not bit for bit.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>

#include "core/cpu.hpp"
#include "core/error.hpp"
#include "kernels/attention_bias.hpp"
#include "kernels/vecmath.hpp"

namespace stretch {

// The far score set of attention_forward_tiled (below): qk (B, T, 2C) = q' | k' (null: one score set), used for
// the pairs with i - j >= window (window >= 1).
template <class F>
struct FarScores {
  const F* qk = nullptr;
  int window = 0;
};

// The keys query i sees in head h, by index: j in [lo(h, i), i]. W is the effective sliding window (T: none); G > 0
// adds LongLoRA's shifted sparse attention (S2-Attn): groups of G positions, heads h < NH/2 at [k G, (k + 1) G), the
// others shifted by G/2, at [k G - G/2, (k + 1) G - G/2) clipped at 0; a query sees the keys of its own group. lo is
// non-decreasing in i and hi (the last query that sees key j) in j, which the block and tile skipping rely on.
struct KeyRange {
  int W = 1, G = 0, NH = 1;
  int shift(int h) const { return G > 0 && h >= NH / 2 ? G / 2 : 0; }
  int lo(int h, int i) const {
    int l = i - W + 1 > 0 ? i - W + 1 : 0;
    if (G > 0) {
      const int s = shift(h), g = (i + s) / G * G - s;
      if (g > l) l = g;
    }
    return l;
  }
  int hi(int h, int j) const {
    int e = j + W - 1;
    if (G > 0) {
      const int s = shift(h), g = ((j + s) / G + 1) * G - s - 1;
      if (g < e) e = g;
    }
    return e;
  }
};

namespace attention_tiled_detail {
inline void check_args_tiled(int B, int T, int C, int NH, int window, int group = 0) {
  if (group < 0 || group == 1)
    throw ConfigError("attention_tiled: invalid group size " + std::to_string(group) +
                      " (expected 0 for no shifted sparse attention or at least 2 positions)");
  if (B < 0 || T < 0 || C <= 0 || NH <= 0 || C % NH != 0)
    throw ConfigError("attention_tiled: invalid shape B=" + std::to_string(B) + " T=" + std::to_string(T) +
                      " C=" + std::to_string(C) + " NH=" + std::to_string(NH) +
                      " (expected B, T >= 0, C, NH > 0 and C divisible by NH)");
  if (window < 0)
    throw ConfigError("attention_tiled: invalid window " + std::to_string(window) +
                      " (expected 0 for full causal attention or a positive number of keys)");
}
}  // namespace attention_tiled_detail

}  // namespace stretch

// The kernels, compiled for the build target (vectors of 64 bytes where that is AVX-512, else 32) ...
#define STRETCH_TILED_NS tiled_build_target
#define STRETCH_TILED_TARGET
#ifdef __AVX512F__
#define STRETCH_TILED_VEC_BYTES 64
#else
#define STRETCH_TILED_VEC_BYTES 32
#endif
#include "kernels/attention_tiled_body.hpp"
#undef STRETCH_TILED_NS
#undef STRETCH_TILED_TARGET
#undef STRETCH_TILED_VEC_BYTES
// ... and, in a portable build, once more for AVX-512 CPUs (core/cpu.hpp), chosen at run time.
#if STRETCH_X86 && !defined(__AVX512F__)
#define STRETCH_TILED_AVX512_COPY 1
#define STRETCH_TILED_NS tiled_avx512
#define STRETCH_TILED_TARGET STRETCH_TARGET_AVX512
#define STRETCH_TILED_VEC_BYTES 64
#include "kernels/attention_tiled_body.hpp"
#undef STRETCH_TILED_NS
#undef STRETCH_TILED_TARGET
#undef STRETCH_TILED_VEC_BYTES
#else
#define STRETCH_TILED_AVX512_COPY 0
#endif

namespace stretch {

// out (B,T,C) = causal softmax(scale * q k^T + bias) v, never storing more than a tile of scores.
// group > 0: shifted sparse attention in groups of `group` positions (KeyRange; a group >= T is one group: plain).
template <class F, class Bias>
void attention_forward_tiled(F* out, const F* qkv, const int* pos, const Bias& bias, int B, int T, int C, int NH,
                             F scale, int window = 0, F* lse = nullptr, const FarScores<F>& far = {},
                             int group = 0) {
#if STRETCH_TILED_AVX512_COPY
  if (cpu_paths().avx512)
    return tiled_avx512::attention_forward_tiled(out, qkv, pos, bias, B, T, C, NH, scale, window, lse, far, group);
#endif
  tiled_build_target::attention_forward_tiled(out, qkv, pos, bias, B, T, C, NH, scale, window, lse, far, group);
}

// dqkv (B, T, 3C) += the gradient of attention_forward_tiled's out given dout (B, T, C), from the forward's inputs,
// its output `out` and its `lse` (B, NH, T). Learned biases get their gradient through bias.accumulate (called by
// the task owning (b, h)).
template <class F, class Bias>
void attention_backward_tiled(F* dqkv, const F* dout, const F* qkv, const F* out, const F* lse, const int* pos,
                              Bias& bias, int B, int T, int C, int NH, F scale, int window = 0, int group = 0) {
#if STRETCH_TILED_AVX512_COPY
  if (cpu_paths().avx512)
    return tiled_avx512::attention_backward_tiled(dqkv, dout, qkv, out, lse, pos, bias, B, T, C, NH, scale, window,
                                                  group);
#endif
  tiled_build_target::attention_backward_tiled(dqkv, dout, qkv, out, lse, pos, bias, B, T, C, NH, scale, window,
                                               group);
}

}  // namespace stretch
