// LayerNorm over the last dimension (llm.c style: forward and backward side by side).
//
//   inp, out      (N, C)
//   weight, bias  (C), bias may be null
//   mean, rstd    (N), written by the forward pass, read by the backward pass
#include "kernels/layernorm.hpp"

#include <algorithm>
#include <cmath>

namespace stretch {

template <class F>
void layernorm_forward(F* out, F* mean, F* rstd, const F* inp, const F* weight, const F* bias, int N, int C, F eps) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const F* x = inp + static_cast<long>(n) * C;
    F* y = out + static_cast<long>(n) * C;
    // two passes: mean first, then the (biased) variance around it
    F m = F(0);
    for (int c = 0; c < C; c++) m += x[c];
    m /= static_cast<F>(C);
    F var = F(0);
    for (int c = 0; c < C; c++) {
      const F d = x[c] - m;
      var += d * d;
    }
    var /= static_cast<F>(C);
    const F s = F(1) / std::sqrt(var + eps);
    for (int c = 0; c < C; c++) {
      const F norm = (x[c] - m) * s;
      y[c] = norm * weight[c] + (bias ? bias[c] : F(0));
    }
    mean[n] = m;
    rstd[n] = s;
  }
}

//   dout          (N, C)
//   dinp          (N, C)   +=
//   dweight       (C)      += (may be null: a frozen weight)
//   dbias         (C)      += (may be null)
template <class F>
void layernorm_backward(F* dinp, F* dweight, F* dbias, const F* dout, const F* inp, const F* weight, const F* mean,
                        const F* rstd, int N, int C) {
  // dinp: rows are independent.
  //   norm = (x - mean) * rstd, dnorm = dout * weight
  //   dinp += rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm))
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const F* x = inp + static_cast<long>(n) * C;
    const F* dy = dout + static_cast<long>(n) * C;
    F* dx = dinp + static_cast<long>(n) * C;
    const F m = mean[n];
    const F s = rstd[n];
    F dnorm_mean = F(0);
    F dnorm_norm_mean = F(0);
    for (int c = 0; c < C; c++) {
      const F norm = (x[c] - m) * s;
      const F dnorm = weight[c] * dy[c];
      dnorm_mean += dnorm;
      dnorm_norm_mean += dnorm * norm;
    }
    dnorm_mean /= static_cast<F>(C);
    dnorm_norm_mean /= static_cast<F>(C);
    for (int c = 0; c < C; c++) {
      const F norm = (x[c] - m) * s;
      const F dnorm = weight[c] * dy[c];
      dx[c] += s * (dnorm - dnorm_mean - norm * dnorm_norm_mean);
    }
  }

  // dweight += sum_n norm * dout, dbias += sum_n dout: blocks of columns per task, rows summed in order, so the
  // result does not depend on the thread count.
  if (!dweight && !dbias) return;  // frozen
  constexpr int kBlock = 32;
  const int nblocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int blk = 0; blk < nblocks; blk++) {
    const int c0 = blk * kBlock;
    const int c1 = std::min(C, c0 + kBlock);
    F dw[kBlock] = {};
    F db[kBlock] = {};
    for (int n = 0; n < N; n++) {
      const F* x = inp + static_cast<long>(n) * C;
      const F* dy = dout + static_cast<long>(n) * C;
      const F m = mean[n];
      const F s = rstd[n];
      for (int c = c0; c < c1; c++) {
        dw[c - c0] += (x[c] - m) * s * dy[c];
        db[c - c0] += dy[c];
      }
    }
    for (int c = c0; c < c1; c++) {
      if (dweight) dweight[c] += dw[c - c0];
      if (dbias) dbias[c] += db[c - c0];
    }
  }
}

template void layernorm_forward<float>(float*, float*, float*, const float*, const float*, const float*, int, int,
                                       float);
template void layernorm_forward<double>(double*, double*, double*, const double*, const double*, const double*, int,
                                        int, double);
template void layernorm_backward<float>(float*, float*, float*, const float*, const float*, const float*,
                                        const float*, const float*, int, int);
template void layernorm_backward<double>(double*, double*, double*, const double*, const double*, const double*,
                                         const double*, const double*, int, int);

}  // namespace stretch
