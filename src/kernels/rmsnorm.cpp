// RMSNorm over the last dimension (llm.c style: forward and backward side by side).
//
//   inp, out   (N, C)
//   weight     (C)
//   rstd       (N), written by the forward pass, read by the backward pass
#include "kernels/rmsnorm.hpp"

#include <algorithm>
#include <cmath>

namespace stretch {

template <class F>
void rmsnorm_forward(F* out, F* rstd, const F* inp, const F* weight, int N, int C, F eps) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const F* x = inp + static_cast<long>(n) * C;
    F* y = out + static_cast<long>(n) * C;
    F ss = F(0);
    for (int c = 0; c < C; c++) ss += x[c] * x[c];
    ss /= static_cast<F>(C);
    const F s = F(1) / std::sqrt(ss + eps);
    for (int c = 0; c < C; c++) y[c] = x[c] * s * weight[c];
    rstd[n] = s;
  }
}

//   dout      (N, C)
//   dinp      (N, C)   +=
//   dweight   (C)      += (null: a frozen weight, no gradient)
template <class F>
void rmsnorm_backward(F* dinp, F* dweight, const F* dout, const F* inp, const F* weight, const F* rstd, int N,
                      int C) {
  // dinp: rows are independent.
  //   norm = x * rstd, dnorm = dout * weight
  //   d rstd / d x_c = -rstd^3 x_c / C
  //   dinp += rstd * (dnorm - norm * mean(dnorm * norm))
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const F* x = inp + static_cast<long>(n) * C;
    const F* dy = dout + static_cast<long>(n) * C;
    F* dx = dinp + static_cast<long>(n) * C;
    const F s = rstd[n];
    F dnorm_norm_mean = F(0);
    for (int c = 0; c < C; c++) dnorm_norm_mean += weight[c] * dy[c] * (x[c] * s);
    dnorm_norm_mean /= static_cast<F>(C);
    for (int c = 0; c < C; c++) {
      const F norm = x[c] * s;
      const F dnorm = weight[c] * dy[c];
      dx[c] += s * (dnorm - norm * dnorm_norm_mean);
    }
  }

  // dweight += sum_n norm * dout: blocks of columns per task, rows summed in order, so the result does not
  // depend on the thread count.
  if (!dweight) return;  // a frozen weight
  constexpr int kBlock = 32;
  const int nblocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int blk = 0; blk < nblocks; blk++) {
    const int c0 = blk * kBlock;
    const int c1 = std::min(C, c0 + kBlock);
    F dw[kBlock] = {};
    for (int n = 0; n < N; n++) {
      const F* x = inp + static_cast<long>(n) * C;
      const F* dy = dout + static_cast<long>(n) * C;
      const F s = rstd[n];
      for (int c = c0; c < c1; c++) dw[c - c0] += x[c] * s * dy[c];
    }
    for (int c = c0; c < c1; c++) dweight[c] += dw[c - c0];
  }
}

template void rmsnorm_forward<float>(float*, float*, const float*, const float*, int, int, float);
template void rmsnorm_forward<double>(double*, double*, const double*, const double*, int, int, double);
template void rmsnorm_backward<float>(float*, float*, const float*, const float*, const float*, const float*, int,
                                      int);
template void rmsnorm_backward<double>(double*, double*, const double*, const double*, const double*,
                                       const double*, int, int);

}  // namespace stretch
