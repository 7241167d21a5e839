#include "model/block.hpp"

#include <algorithm>
#include <cstddef>
#include <vector>

#include "kernels/embedding.hpp"
#include "kernels/gelu.hpp"
#include "kernels/layernorm.hpp"
#include "kernels/rmsnorm.hpp"
#include "kernels/swiglu.hpp"
#include "position/rope.hpp"
#include "position/sinusoidal.hpp"

namespace stretch {

namespace {
// after the token rows are in x: the scale and the absolute positions
void embed_rest(float* x, const int* pos, int N, const ModelConfig& c, const float* wpe) {
  const int C = c.n_embd;
  if (c.embed_scale != 1.0f)
    for (std::size_t i = 0; i < static_cast<std::size_t>(N) * C; i++) x[i] *= c.embed_scale;
  if (c.position == PositionMethod::learned) embedding_add_forward(x, pos, wpe, N, C);
  if (c.position == PositionMethod::sinusoidal) sinusoidal_add_forward(x, pos, N, C);
}
}  // namespace

void embed_forward(float* x, const std::int32_t* tokens, const int* pos, int N, const ModelConfig& c,
                   const float* wte, const float* wpe) {
  embedding_forward(x, tokens, wte, N, c.n_embd);
  embed_rest(x, pos, N, c, wpe);
}

void embed_forward(float* x, const std::int32_t* tokens, const int* pos, int N, const ModelConfig& c,
                   const bf16_t* wte, const float* wpe) {
  embedding_forward(x, tokens, wte, N, c.n_embd);
  embed_rest(x, pos, N, c, wpe);
}

void far_positions_forward(float* far, const float* qkv, const int* pos, int N, const ModelConfig& c,
                           const float* inv_freq) {
  const int C = c.n_embd;
  const std::size_t rows = static_cast<std::size_t>(N);
  std::vector<double> fpos(2 * rows);
  for (std::size_t r = 0; r < rows; r++) {
    fpos[r] = c.extension.far_query(pos[r]);
    fpos[rows + r] = c.extension.far_key(pos[r]);
  }
  const long n = N;
#pragma omp parallel for schedule(static) if (n >= 64)
  for (long r = 0; r < n; r++)
    std::copy_n(qkv + static_cast<std::size_t>(r) * 3 * C, 2 * C, far + static_cast<std::size_t>(r) * 2 * C);
  rope_rotate_rows(far, fpos.data(), inv_freq, N, 2 * C, c.n_head, c.head_dim());
  rope_rotate_rows(far + C, fpos.data() + rows, inv_freq, N, 2 * C, c.n_head, c.head_dim());
}

void residual_add(float* dst, const float* a, const float* b, std::size_t n) {
  const long nn = static_cast<long>(n);
  // threads only for a batch's rows: a decoded token's row is shorter than a parallel region's start-up
#pragma omp parallel for schedule(static) if (nn >= 16384)
  for (long i = 0; i < nn; i++) dst[i] = a[i] + b[i];
}

void norm_forward(const ModelConfig& c, float* out, float* mean, float* rstd, const float* inp, const float* w,
                  const float* b, int N) {
  if (c.arch == Arch::llama) {
    rmsnorm_forward(out, rstd, inp, w, N, c.n_embd, c.norm_eps);
  } else {
    layernorm_forward(out, mean, rstd, inp, w, b, N, c.n_embd, c.norm_eps);
  }
}

void norm_backward(const ModelConfig& c, float* dinp, float* dw, float* db, const float* dout, const float* inp,
                   const float* w, const float* mean, const float* rstd, int N) {
  if (c.arch == Arch::llama) {
    rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, c.n_embd);
  } else {
    layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, c.n_embd);
  }
}

void mlp_act_forward(const ModelConfig& c, float* act, const float* fc, int N) {
  const std::size_t n = static_cast<std::size_t>(N), F = static_cast<std::size_t>(c.mlp_hidden);
  if (c.arch == Arch::llama) {
    swiglu_forward(act, fc, n, static_cast<int>(F));
  } else if (c.activation == Activation::gelu) {
    gelu_erf_forward(act, fc, n * F);
  } else {
    gelu_forward(act, fc, n * F);
  }
}

void mlp_act_backward(const ModelConfig& c, float* dfc, const float* fc, const float* dact, int N) {
  const std::size_t n = static_cast<std::size_t>(N), F = static_cast<std::size_t>(c.mlp_hidden);
  if (c.arch == Arch::llama) {
    swiglu_backward(dfc, fc, dact, n, static_cast<int>(F));
  } else if (c.activation == Activation::gelu) {
    gelu_erf_backward(dfc, fc, dact, n * F);
  } else {
    gelu_backward(dfc, fc, dact, n * F);
  }
}

}  // namespace stretch
