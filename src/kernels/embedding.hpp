// Embedding lookups: token embeddings (wte) and learned absolute positions (wpe).
//
//   ids (N) int32 row indices into table (rows, C); out (N, C)
//   embedding_forward: out[n] = table[ids[n]];  embedding_add_forward: out[n] += table[ids[n]]
//   embedding_backward: dtable[ids[n]] += dout[n] (scatter-add, deterministic for a given thread count)
//   embedding_forward from a bf16 table: out[n] = the row widened to float (exact; weights stored in bf16 for
//   inference, model/transformer.hpp WeightStorage)
// Callers validate ids (0 <= id < rows) before calling. Instantiated for float and double.
#pragma once
#include "core/numeric.hpp"

namespace stretch {

template <class F>
void embedding_forward(F* out, const int* ids, const F* table, int N, int C);

void embedding_forward(float* out, const int* ids, const bf16_t* table, int N, int C);

template <class F>
void embedding_add_forward(F* out, const int* ids, const F* table, int N, int C);

template <class F>
void embedding_backward(F* dtable, const F* dout, const int* ids, int N, int C, int rows);

}  // namespace stretch
