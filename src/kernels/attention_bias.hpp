// The position-bias hook shared by the attention kernels (attention.hpp, attention_tiled.hpp,
// attention_fast.hpp): a functor called per score, never a stored T x T tensor. See attention.hpp for the
// contract a bias functor fulfils.
#pragma once

namespace stretch {

// No bias beyond the causal mask (methods none, sinusoidal, learned, rope).
struct NoBias {
  static constexpr bool kLearned = false;
  template <class F = float>
  F operator()(int, int, int) const { return F(0); }
};

// The bias in precision F: the functor's templated call operator if it has one, else its result converted.
template <class F, class Bias>
inline F attention_bias_value(const Bias& bias, int h, int pos_i, int pos_j) {
  if constexpr (requires { bias.template operator()<F>(h, pos_i, pos_j); })
    return bias.template operator()<F>(h, pos_i, pos_j);
  else
    return static_cast<F>(bias(h, pos_i, pos_j));
}

}  // namespace stretch
