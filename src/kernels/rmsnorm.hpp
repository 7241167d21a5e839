// RMSNorm over the last dimension (LLaMA's).
//
//   inp, out (N, C); weight (C); rstd (N) saved for the backward pass
//   out = inp * rstd * weight,  rstd = 1 / sqrt(mean_c(inp^2) + eps)
//
// Backward accumulates (+=) into dinp and dweight. Deterministic for a given thread count (dweight is reduced by
// column blocks with the rows summed in order, so in fact independent of it). Instantiated for float and double.
#pragma once

namespace stretch {

template <class F>
void rmsnorm_forward(F* out, F* rstd, const F* inp, const F* weight, int N, int C, F eps = F(1e-5));

template <class F>
void rmsnorm_backward(F* dinp, F* dweight, const F* dout, const F* inp, const F* weight, const F* rstd, int N,
                      int C);

}  // namespace stretch
