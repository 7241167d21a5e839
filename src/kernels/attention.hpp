// Causal multi-head self-attention with an additive position bias computed on the fly (never stored).
//
//   qkv   (B, T, 3C)  [q | k | v]; head h uses channels h*hd .. h*hd+hd-1 of each third; hd = C / NH
//   pos   (B, T)      int32 position ids (the bias sees positions, the causal mask sees indices)
//   out   (B, T, C)   heads concatenated
//   probs (B, NH, T, T) softmax probabilities saved for the backward pass (entries j > i are 0)
//
//   s[b,h,i,j] = scale * q_i . k_j + bias(h, pos[b,i], pos[b,j])   for j visible to i, else -inf
//   out[b,i,h] = sum_j softmax_j(s[b,h,i,:]) v_j
//
// Visibility (sliding window): key j is visible to query i iff j <= i and i - j < window, with window = 0 meaning
// no window (plain causal; any window >= T is the same). The window is index-based, like the causal mask: it
// counts tokens of the sequence, never position ids, so shifted / randomized / repeated positions do not change
// which keys a query sees. probs entries of invisible keys are 0. window < 0 throws ConfigError. The backward
// pass must be given the window of its forward pass. Cost: O(T * min(T, window)) per (b, h) for the scores and
// sums (the probs block stays (T, T)).
//
// Bias functors (see position/): a type with
//   F operator()(int h, int pos_i, int pos_j) const          the additive bias
//   static constexpr bool kLearned                            true when the bias has parameters
//   void accumulate(int b, int h, int pos_i, int pos_j, F d)  (learned only) adds d to the gradient of the
//                                                             parameter that produced bias(h, pos_i, pos_j);
//                                                             called by the task that owns (b, h) only, so
//                                                             a functor keeping per-(b, h) partial sums is
//                                                             deterministic.
// Backward accumulates (+=) into dqkv. The plain kernel is the reference; faster kernels are tested against it.
#pragma once
#include "kernels/attention_bias.hpp"

namespace stretch {

template <class F, class Bias>
void attention_forward(F* out, F* probs, const F* qkv, const int* pos, const Bias& bias, int B, int T, int C, int NH,
                       F scale, int window = 0);

template <class F, class Bias>
void attention_backward(F* dqkv, const F* dout, const F* qkv, const F* probs, const int* pos, Bias& bias, int B,
                        int T, int C, int NH, F scale, int window = 0);

}  // namespace stretch

#include "kernels/attention_impl.hpp"
