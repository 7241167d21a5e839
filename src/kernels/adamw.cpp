#include "kernels/adamw.hpp"

#include <cmath>

namespace stretch {

void adamw_update(float* params, const float* grads, float* m, float* v, std::size_t n, const AdamWStep& s) {
  const float c1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(s.beta1), static_cast<double>(s.t)));
  const float c2 = 1.0f - static_cast<float>(std::pow(static_cast<double>(s.beta2), static_cast<double>(s.t)));
  const long nn = static_cast<long>(n);
#pragma omp parallel for schedule(static)
  for (long i = 0; i < nn; i++) {
    const float g = grads[i];
    const float mi = s.beta1 * m[i] + (1.0f - s.beta1) * g;
    const float vi = s.beta2 * v[i] + (1.0f - s.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi / c1;
    const float vhat = vi / c2;
    params[i] -= s.lr * (mhat / (std::sqrt(vhat) + s.eps) + s.weight_decay * params[i]);
  }
}

}  // namespace stretch
