// GELU, tanh approximation (GPT-2's): gelu(u) = 0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3))).
//   inp, out, dinp, dout: n elements. Backward accumulates (+=) into dinp. Instantiated for float and double.
#pragma once
#include <cstddef>

namespace stretch {

template <class F>
void gelu_forward(F* out, const F* inp, std::size_t n);

template <class F>
void gelu_backward(F* dinp, const F* inp, const F* dout, std::size_t n);

}  // namespace stretch
