// SwiGLU (llm.c style: forward and backward side by side).
//
//   inp, dinp  (N, 2*Fh) rows [gate | up]
//   out, dout  (N, Fh)
//   out      = silu(g) * u,            silu(g) = g * sig(g),  sig(g) = 1 / (1 + exp(-g))
//   d out/dg = u * sig(g) * (1 + g * (1 - sig(g)))
//   d out/du = silu(g)
#include "kernels/swiglu.hpp"

#include <cmath>

#include "kernels/vecmath.hpp"

namespace stretch {

namespace {
// The logistic function, branch-free so the loops below vectorize: kexp is vecmath's exp_fast for float (its clamp
// keeps 1 + e finite) and std::exp for double, the oracle (an overflow to inf gives exactly 0).
template <class F>
inline F sigmoid(F x) {
  return F(1) / (F(1) + kexp(-x));
}
}  // namespace

template <class F>
void swiglu_forward(F* out, const F* inp, std::size_t N, int Fh) {
  const long nn = static_cast<long>(N);
#pragma omp parallel for schedule(static)
  for (long n = 0; n < nn; n++) {
    const F* g = inp + n * 2L * Fh;
    const F* u = g + Fh;
    F* y = out + n * static_cast<long>(Fh);
#pragma omp simd
    for (int i = 0; i < Fh; i++) y[i] = g[i] * sigmoid(g[i]) * u[i];
  }
}

// dinp[:, :Fh] += dout * u * sig(g) (1 + g (1 - sig(g))),  dinp[:, Fh:] += dout * silu(g)
template <class F>
void swiglu_backward(F* dinp, const F* inp, const F* dout, std::size_t N, int Fh) {
  const long nn = static_cast<long>(N);
#pragma omp parallel for schedule(static)
  for (long n = 0; n < nn; n++) {
    const F* g = inp + n * 2L * Fh;
    const F* u = g + Fh;
    F* dg = dinp + n * 2L * Fh;
    F* du = dg + Fh;
    const F* dy = dout + n * static_cast<long>(Fh);
#pragma omp simd
    for (int i = 0; i < Fh; i++) {
      const F s = sigmoid(g[i]);
      const F silu = g[i] * s;
      dg[i] += dy[i] * u[i] * s * (F(1) + g[i] * (F(1) - s));
      du[i] += dy[i] * silu;
    }
  }
}

template void swiglu_forward<float>(float*, const float*, std::size_t, int);
template void swiglu_forward<double>(double*, const double*, std::size_t, int);
template void swiglu_backward<float>(float*, const float*, const float*, std::size_t, int);
template void swiglu_backward<double>(double*, const double*, const double*, std::size_t, int);

}  // namespace stretch
