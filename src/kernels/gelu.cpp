// GELU, tanh approximation (GPT-2's), llm.c style; and the exact form (erf).
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
template <class F>
constexpr F kInvSqrt2 = F(0.70710678118654752440084436210485);
template <class F>
constexpr F kInvSqrt2Pi = F(0.39894228040143267793994605993438);
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

// The exact form: erf from the C library (no fast approximation), in F.
template <class F>
void gelu_erf_forward(F* out, const F* inp, std::size_t n) {
  const long nn = static_cast<long>(n);
#pragma omp parallel for schedule(static)
  for (long i = 0; i < nn; i++) {
    const F u = inp[i];
    out[i] = F(0.5) * u * (F(1) + std::erf(u * kInvSqrt2<F>));
  }
}

// dinp += (Phi(u) + u phi(u)) * dout
template <class F>
void gelu_erf_backward(F* dinp, const F* inp, const F* dout, std::size_t n) {
  const long nn = static_cast<long>(n);
#pragma omp parallel for schedule(static)
  for (long i = 0; i < nn; i++) {
    const F u = inp[i];
    const F cdf = F(0.5) * (F(1) + std::erf(u * kInvSqrt2<F>));
    const F pdf = kInvSqrt2Pi<F> * std::exp(F(-0.5) * u * u);
    dinp[i] += (cdf + u * pdf) * dout[i];
  }
}

template void gelu_erf_forward<float>(float*, const float*, std::size_t);
template void gelu_erf_forward<double>(double*, const double*, std::size_t);
template void gelu_erf_backward<float>(float*, const float*, const float*, std::size_t);
template void gelu_erf_backward<double>(double*, const double*, const double*, std::size_t);

template void gelu_forward<float>(float*, const float*, std::size_t);
template void gelu_forward<double>(double*, const double*, std::size_t);
template void gelu_backward<float>(float*, const float*, const float*, std::size_t);
template void gelu_backward<double>(double*, const double*, const double*, std::size_t);

}  // namespace stretch
