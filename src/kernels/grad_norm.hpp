// The optimizer step's checks on the gradient slab (and the checkpoint writer's on weights):
//   sum_of_squares(g) = sum_i g_i^2 in double (the global norm is its square root). A float's square is below
//     1.2e77, so the sum is finite exactly when every g_i is: one pass gives the norm and the non-finite check.
//     A fixed order that does not depend on the thread count, so the norm (and through clipping the weights) is
//     the same bit for bit on any thread count: blocks of 32768 values, each summed into 8 accumulators (value i
//     into i mod 8, in index order) added pairwise; the blocks' sums (OpenMP-parallel across blocks for slabs of
//     16 blocks or more) added in block order. The accumulators break the one-add-per-4-cycles chain of a plain loop
//     and let the compiler vectorize.
//   scale(x, s): x_i *= s (gradient clipping: s = clip / norm when norm > clip).
//   count_nonfinite(x): how many x_i are NaN or +-Inf (exponent bits all ones), OpenMP-parallel when n is large.
// Each has a plain reference in tests/kernels/test_grad_norm.cpp.
#pragma once
#include <cstddef>

namespace stretch {

double sum_of_squares(const float* x, std::size_t n);
void scale(float* x, std::size_t n, float s);
std::size_t count_nonfinite(const float* x, std::size_t n);

}  // namespace stretch
