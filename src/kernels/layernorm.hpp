// LayerNorm over the last dimension.
//
//   inp, out (N, C); weight, bias (C) (bias may be null); mean, rstd (N) saved for the backward pass
//   out = (inp - mean) * rstd * weight + bias,  rstd = 1 / sqrt(var + eps), var the biased variance
//
// Backward accumulates (+=) into dinp, dweight, dbias (dbias may be null). Deterministic for a given thread
// count. Instantiated for float and double.
#pragma once

namespace stretch {

template <class F>
void layernorm_forward(F* out, F* mean, F* rstd, const F* inp, const F* weight, const F* bias, int N, int C,
                       F eps = F(1e-5));

template <class F>
void layernorm_backward(F* dinp, F* dweight, F* dbias, const F* dout, const F* inp, const F* weight, const F* mean,
                        const F* rstd, int N, int C);

}  // namespace stretch
