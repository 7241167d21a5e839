// Grouped-query attention support: expand the packed q/k/v rows to full multi-head rows.
//
//   C = NH * hd (hd = C / NH), KVD = NKV * hd, NH % NKV == 0, group size G = NH / NKV
//   packed (BT, C + 2*KVD) rows [q (NH*hd) | k (NKV*hd) | v (NKV*hd)]
//   full   (BT, 3*C)       rows [q (NH*hd) | k (NH*hd)  | v (NH*hd) ], full k/v head h = packed k/v head h / G
//
// forward overwrites full; backward accumulates (+=) into dpacked (the k/v heads receive the sum over their
// group). NKV == NH is a plain copy. Throws ConfigError when C, NH, NKV are inconsistent. Instantiated for float
// and double.
#pragma once
#include <cstddef>

namespace stretch {

template <class F>
void repeat_kv_forward(F* full, const F* packed, std::size_t BT, int C, int NH, int NKV);

template <class F>
void repeat_kv_backward(F* dpacked, const F* dfull, std::size_t BT, int C, int NH, int NKV);

}  // namespace stretch
