// Embedding lookups (token and learned absolute position tables), llm.c style.
//
//   ids     (N) int32 row indices, validated by the caller (0 <= id < rows)
//   table   (rows, C)
//   out     (N, C)
//   dtable  (rows, C)  += (scatter-add)
#include "kernels/embedding.hpp"

#include <algorithm>
#include <cstring>

namespace stretch {

template <class F>
void embedding_forward(F* out, const int* ids, const F* table, int N, int C) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    std::memcpy(out + static_cast<long>(n) * C, table + static_cast<long>(ids[n]) * C, sizeof(F) * C);
  }
}

void embedding_forward(float* out, const int* ids, const bf16_t* table, int N, int C) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++)
    bf16_to_float(table + static_cast<long>(ids[n]) * C, static_cast<std::size_t>(C), out + static_cast<long>(n) * C);
}

template <class F>
void embedding_add_forward(F* out, const int* ids, const F* table, int N, int C) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    F* y = out + static_cast<long>(n) * C;
    const F* row = table + static_cast<long>(ids[n]) * C;
    for (int c = 0; c < C; c++) y[c] += row[c];
  }
}

// Repeated ids make the scatter collide, so tasks own blocks of columns instead of rows; inside a block the rows
// n are visited in order. The result does not depend on the thread count.
template <class F>
void embedding_backward(F* dtable, const F* dout, const int* ids, int N, int C, int rows) {
  (void)rows;  // the caller validated ids against it
  constexpr int kBlock = 16;
  const int nblocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int blk = 0; blk < nblocks; blk++) {
    const int c0 = blk * kBlock;
    const int c1 = std::min(C, c0 + kBlock);
    for (int n = 0; n < N; n++) {
      const F* d = dout + static_cast<long>(n) * C;
      F* row = dtable + static_cast<long>(ids[n]) * C;
      for (int c = c0; c < c1; c++) row[c] += d[c];
    }
  }
}

template void embedding_forward<float>(float*, const int*, const float*, int, int);
template void embedding_forward<double>(double*, const int*, const double*, int, int);
template void embedding_add_forward<float>(float*, const int*, const float*, int, int);
template void embedding_add_forward<double>(double*, const int*, const double*, int, int);
template void embedding_backward<float>(float*, const float*, const int*, int, int, int);
template void embedding_backward<double>(double*, const double*, const int*, int, int, int);

}  // namespace stretch
