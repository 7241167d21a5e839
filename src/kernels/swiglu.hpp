// SwiGLU gate of the LLaMA feed-forward block.
//
//   inp  (N, 2*Fh): each row is [gate (Fh) | up (Fh)]  (the output of the fused w13 = [w1; w3] projection)
//   out  (N, Fh)  : out = silu(gate) * up,  silu(x) = x * sigmoid(x)
//
// Backward accumulates (+=) into dinp (N, 2*Fh) given dout (N, Fh). float uses kernels/vecmath.hpp's vectorizable
// exp (relative error < 2e-7); double uses std::exp and is the reference. Instantiated for float and double.
#pragma once
#include <cstddef>

namespace stretch {

template <class F>
void swiglu_forward(F* out, const F* inp, std::size_t N, int Fh);

template <class F>
void swiglu_backward(F* dinp, const F* inp, const F* dout, std::size_t N, int Fh);

}  // namespace stretch
