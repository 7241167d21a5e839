// Vaswani et al.'s fixed sinusoidal position embeddings, added to the token embeddings:
//   PE(p, 2i) = sin(p / 10000^(2i/C)),  PE(p, 2i+1) = cos(p / 10000^(2i/C))
// (computed in double, stored as F). No parameters: the backward pass is the identity on the residual stream.
//   out (N, C) += PE(pos[n]) for n < N
#pragma once

namespace stretch {

template <class F>
void sinusoidal_add_forward(F* out, const int* pos, int N, int C);

}  // namespace stretch
