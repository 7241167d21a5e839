// Rotary position embeddings (Su et al.), interleaved pairing (2i, 2i+1) as in Meta's LLaMA and llama2.c.
//   inv_freq[i] = base^(-2i/hd), i = 0 .. hd/2-1 (base 10000 by default)
//   angle = pos * inv_freq[i];  (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos)
// Applied in place to the q and k thirds of qkv (B, T, 3C) for every head; v is untouched.
// Backward rotates dq and dk by -angle in place (the rotation is orthogonal).
// Instantiated for float and double.
#pragma once
#include <vector>

namespace stretch {

std::vector<float> rope_inv_freq(int head_dim, double base = 10000.0);

// The two pieces every RoPE path is made of (training, evaluation, cached decoding with its own angle tables):
// cs, sn (half) = cos and sin of pos * inv_freq[i], computed in double and rounded to F once (accurate at large
// positions; an integer position gives the same bits however it is passed);
template <class F>
void rope_angles(F* cs, F* sn, double pos, const float* inv_freq, int half);
// one head's interleaved pairs rotated by those angles: dst (2 half) = R src (dst may be src).
template <class F>
inline void rope_rotate_head(F* dst, const F* src, const F* cs, const F* sn, int half) {
  for (int i = 0; i < half; i++) {
    const F x0 = src[2 * i], x1 = src[2 * i + 1];
    dst[2 * i] = x0 * cs[i] - x1 * sn[i];
    dst[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
  }
}

template <class F>
void rope_forward(F* qkv, const int* pos, const float* inv_freq, int B, int T, int C, int NH);

// Strided rows with a position list: the q_heads heads at the start of each of `rows` rows (stride `stride`) and
// the k_heads heads from k_offset on, rotated at pos[row]. rope_forward is this with stride 3C, k_offset C and
// k_heads NH; the decoder passes its q | k | v rows of NKV key heads (grouped-query attention).
template <class F>
void rope_forward_rows(F* x, const int* pos, const float* inv_freq, long rows, long stride, int q_heads,
                       long k_offset, int k_heads, int hd);

template <class F>
void rope_backward(F* dqkv, const int* pos, const float* inv_freq, int B, int T, int C, int NH);

// Rotates `heads` heads of hd channels at the start of each of `rows` rows (row stride `stride`) by the angle
// pos[row] * inv_freq[i], with positions in double (fractional ones too: leaky ReRoPE, position/extension.hpp).
// cos and sin computed in double and rounded once, as rope_forward does: an integer position gives its bits.
template <class F>
void rope_rotate_rows(F* x, const double* pos, const float* inv_freq, long rows, long stride, int heads, int hd);

}  // namespace stretch
