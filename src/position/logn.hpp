// Log-n attention scaling: the attention scores of the query at position p are multiplied by g(p), so that the
// softmax keeps its sharpness when a query sees more keys than during training.
//
//   full    g(p) = log(max(p + 1, 2)) / log(L_train)         (Chiang & Cholak 2022, "multiply attention logits by
//                                                            log n", n = p + 1 keys seen, normalized so that
//                                                            g(L_train - 1) = 1; the max avoids g(0) = 0)
//   beyond  g(p) = max(1, log(p + 1) / log(L_train))        (Qwen's logn attention: 1 inside the trained range,
//                                                            growing like log n beyond it)
//   off     g(p) = 1
// p is the query's position id (pos), L_train the training context length (>= 2). Negative p counts as 0.
//
// Implementation: s_ij = scale * (g(p_i) q_i) . k_j + bias, i.e. the query rows are scaled in place before attention
// (after rope, with which the scaling commutes) and the additive position bias (alibi, t5) is not scaled. Since
// the map q -> g q is linear, the backward pass scales the query-gradient rows by the same g (the attention
// backward gives dL/d(g q); dL/dq = g dL/d(g q)).
//
// Layout: BT rows of row_stride values (qkv (B, T, 3C): row_stride = 3C); the query part is the first C values of
// each row (NH heads x hd), pos has BT entries (pos (B, T)). Instantiated for float and double; parallel over rows,
// the same bits for any thread count (each value is one multiplication by g computed in double, rounded to F).
#pragma once
#include <string>

namespace stretch {

enum class LognMode { off, full, beyond };

// "off" / "full" / "beyond"
std::string to_string(LognMode m);
// Throws ConfigError naming `flag` and the valid values for anything else.
LognMode parse_logn_mode(const std::string& s, const std::string& flag);

// g(p) of the formulas above, in double. Throws ConfigError when mode != off and L_train < 2.
double logn_factor(int p, int L_train, LognMode mode);

// Scales the query part of each row of qkv in place by g(pos[row]). No-op for mode off.
template <class F>
void logn_scale_queries(F* qkv, const int* pos, long BT, int row_stride, int C, int L_train, LognMode mode);

// The same scaling applied to the query part of dqkv (backward; call after attention_backward, before the rope
// backward, i.e. in the reverse order of the forward).
template <class F>
void logn_scale_query_grads(F* dqkv, const int* pos, long BT, int row_stride, int C, int L_train, LognMode mode);

}  // namespace stretch
