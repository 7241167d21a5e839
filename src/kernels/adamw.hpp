// AdamW (Loshchilov & Hutter): decoupled weight decay.
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr * ( (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + weight_decay * p )
// over n elements of one parameter tensor; t is the 1-based step.
#pragma once
#include <cstddef>

namespace stretch {

struct AdamWStep {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  long t = 1;
};

void adamw_update(float* params, const float* grads, float* m, float* v, std::size_t n, const AdamWStep& s);

}  // namespace stretch
