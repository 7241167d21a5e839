// GELU in its two forms, chosen by ModelConfig::activation:
//   gelu_forward      tanh approximation (GPT-2's, BLOOM's, "gelu_new"): 0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3)))
//   gelu_erf_forward  exact (Hendrycks & Gimpel; PyTorch's nn.GELU(), MPT's): u Phi(u) = 0.5 u (1 + erf(u / sqrt 2)),
//                     derivative Phi(u) + u phi(u), phi(u) = exp(-u^2 / 2) / sqrt(2 pi)
//   inp, out, dinp, dout: n elements. Backward accumulates (+=) into dinp. Instantiated for float and double.
#pragma once
#include <cstddef>

namespace stretch {

template <class F>
void gelu_forward(F* out, const F* inp, std::size_t n);

template <class F>
void gelu_backward(F* dinp, const F* inp, const F* dout, std::size_t n);

template <class F>
void gelu_erf_forward(F* out, const F* inp, std::size_t n);

template <class F>
void gelu_erf_backward(F* dinp, const F* inp, const F* dout, std::size_t n);

}  // namespace stretch
