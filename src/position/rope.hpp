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

template <class F>
void rope_forward(F* qkv, const int* pos, const float* inv_freq, int B, int T, int C, int NH);

template <class F>
void rope_backward(F* dqkv, const int* pos, const float* inv_freq, int B, int T, int C, int NH);

// Rotates `heads` heads of hd channels at the start of each of `rows` rows (row stride `stride`) by the angle
// pos[row] * inv_freq[i], with positions in double (fractional ones too: leaky ReRoPE, position/extension.hpp).
// cos and sin computed in double and rounded once, as rope_forward does: an integer position gives its bits.
template <class F>
void rope_rotate_rows(F* x, const double* pos, const float* inv_freq, long rows, long stride, int heads, int hd);

}  // namespace stretch
