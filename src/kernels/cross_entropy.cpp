// Fused softmax + cross-entropy over the vocabulary, llm.c style.
//
//   logits   (N, V)
//   targets  (N) int32; negative = not scored (loss 0, gradient 0)
//   losses   (N)
//   dlosses  (N)
//   dlogits  (N, V), overwritten; may alias logits (every element is read before it is written)
//
// The softmax subtracts the row max; exponentials are taken in F, their sum is accumulated in double.
#include "kernels/cross_entropy.hpp"

#include <cmath>
#include <string>

#include "core/error.hpp"

namespace stretch {

namespace {

// Targets must be below V (the header leaves non-negative targets to the caller; a cheap check avoids reading
// out of bounds).
void check_targets(const int* targets, int N, int V, const char* what) {
  for (int n = 0; n < N; n++) {
    if (targets[n] >= V) {
      throw Error(std::string(what) + ": target " + std::to_string(targets[n]) + " at row " + std::to_string(n) +
                  " is outside the vocabulary (V = " + std::to_string(V) + ")");
    }
  }
}

// Row max and sum of exp(logit - max).
template <class F>
void softmax_stats(const F* x, int V, F& maxv, double& sum) {
  F m = x[0];
  for (int i = 1; i < V; i++) m = x[i] > m ? x[i] : m;
  double s = 0.0;
  for (int i = 0; i < V; i++) s += static_cast<double>(std::exp(x[i] - m));
  maxv = m;
  sum = s;
}

}  // namespace

template <class F>
void cross_entropy_forward(F* losses, const F* logits, const int* targets, int N, int V) {
  check_targets(targets, N, V, "cross_entropy_forward");
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const int t = targets[n];
    if (t < 0) {
      losses[n] = F(0);
      continue;
    }
    const F* x = logits + static_cast<long>(n) * V;
    F m;
    double s;
    softmax_stats(x, V, m, s);
    // -log(exp(x_t - m) / s) = log(s) - (x_t - m)
    losses[n] = static_cast<F>(std::log(s) - static_cast<double>(x[t] - m));
  }
}

template <class F>
void cross_entropy_backward(F* dlogits, const F* logits, const int* targets, const F* dlosses, int N, int V) {
  check_targets(targets, N, V, "cross_entropy_backward");
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const int t = targets[n];
    const F* x = logits + static_cast<long>(n) * V;
    F* dx = dlogits + static_cast<long>(n) * V;
    if (t < 0) {
      for (int i = 0; i < V; i++) dx[i] = F(0);
      continue;
    }
    F m;
    double s;
    softmax_stats(x, V, m, s);
    const F inv = static_cast<F>(1.0 / s);
    const F dl = dlosses[n];
    for (int i = 0; i < V; i++) {
      const F p = std::exp(x[i] - m) * inv;
      dx[i] = (p - (i == t ? F(1) : F(0))) * dl;
    }
  }
}

template void cross_entropy_forward<float>(float*, const float*, const int*, int, int);
template void cross_entropy_forward<double>(double*, const double*, const int*, int, int);
template void cross_entropy_backward<float>(float*, const float*, const int*, const float*, int, int);
template void cross_entropy_backward<double>(double*, const double*, const int*, const double*, int, int);

}  // namespace stretch
