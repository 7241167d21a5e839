// GELU, tanh approximation (GPT-2's), llm.c style.
//
//   inp, out, dout, dinp  (n) elementwise
//   gelu(u)  = 0.5 u (1 + tanh(k (u + 0.044715 u^3))),  k = sqrt(2/pi)
//   gelu'(u) = 0.5 (1 + t) + 0.5 u (1 - t^2) k (1 + 3 * 0.044715 u^2),  t = tanh(k (u + 0.044715 u^3))
#include "kernels/gelu.hpp"

#include <cmath>

#include "kernels/vecmath.hpp"

namespace stretch {

namespace {
template <class F>
constexpr F kSqrt2OverPi = F(0.79788456080286535587989211986876);
template <class F>
constexpr F kGeluCubic = F(0.044715);
}  // namespace

template <class F>
void gelu_forward(F* out, const F* inp, std::size_t n) {
  const long nn = static_cast<long>(n);
#pragma omp parallel for simd schedule(static)
  for (long i = 0; i < nn; i++) {
    const F u = inp[i];
    const F cube = kGeluCubic<F> * u * u * u;
    out[i] = F(0.5) * u * (F(1) + ktanh(kSqrt2OverPi<F> * (u + cube)));
  }
}

// dinp += gelu'(inp) * dout
template <class F>
void gelu_backward(F* dinp, const F* inp, const F* dout, std::size_t n) {
  const long nn = static_cast<long>(n);
#pragma omp parallel for simd schedule(static)
  for (long i = 0; i < nn; i++) {
    const F u = inp[i];
    const F cube = kGeluCubic<F> * u * u * u;
    const F t = ktanh(kSqrt2OverPi<F> * (u + cube));
    const F sech2 = F(1) - t * t;
    const F local = F(0.5) * (F(1) + t) +
                    F(0.5) * u * sech2 * kSqrt2OverPi<F> * (F(1) + F(3) * kGeluCubic<F> * u * u);
    dinp[i] += local * dout[i];
  }
}

template void gelu_forward<float>(float*, const float*, std::size_t);
template void gelu_forward<double>(double*, const double*, std::size_t);
template void gelu_backward<float>(float*, const float*, const float*, std::size_t);
template void gelu_backward<double>(double*, const double*, const double*, std::size_t);

}  // namespace stretch
