// Incremental decoding with a key/value cache (generation), for both families and every position method.
//
// The cache holds, per layer, the keys and values of the tokens seen so far: K, V (n_layer, S, KVD) with
// S = ctx slots and KVD = NKV hd (grouped-query models cache their NKV heads only). A key enters the cache
// already rotated (RoPE is applied once, at its position); ALiBi and T5 biases are computed from the
// positions of the query and of each cached key. append() feeds n new tokens: each layer projects them, writes
// their keys/values, and every new query attends to the cached keys up to itself (and within the model's
// attention window), so the logits equal a full forward over the same prefix (tested within 1e-5).
//
// Past the cache's end: with `slide`, methods whose scores depend only on distances (alibi, t5, none) keep
// the latest S tokens in a ring (slot = index mod S) and go on indefinitely in bounded memory; the result
// equals a full forward with a sliding attention window of S (attn_window = S) over the whole sequence (the
// cached keys of upper layers still carry what lower layers saw of older tokens, as in Mistral's rolling cache). Other methods (rope, sinusoidal, learned) would need
// positions they never saw: ContextFull is thrown, naming --ctx and --rope-scaling.
// Scalings that follow the sequence length (dynamic NTK, LongRoPE's switch to its long factors) use the frequencies
// for a sequence of `ctx` tokens throughout (keys are cached rotated once).
#pragma once
#include <cstdint>
#include <vector>

#include "core/buffer.hpp"
#include "core/error.hpp"
#include "model/transformer.hpp"

namespace stretch {

// The cache is full and the model cannot slide (or sliding was not asked for).
class ContextFull : public UsageError {
 public:
  using UsageError::UsageError;
};

class Decoder {
 public:
  // ctx: cache slots (>= 1). slide: drop the oldest tokens when full (alibi, t5 and none models only;
  // ConfigError for others). The model must outlive the decoder and not change meanwhile.
  Decoder(Transformer& model, int ctx, bool slide);

  // Feeds tokens[0 .. n) and returns their logits, (n, V) when all_logits, else the last row's (V).
  const float* append(const std::int32_t* tokens, int n, bool all_logits = false);

  long length() const { return seen_; }          // tokens fed since construction / reset()
  int capacity() const { return S_; }
  bool can_slide() const { return slide_; }
  // Whether a model with this position method can slide past its cache (its scores depend only on distances).
  static bool can_slide(PositionMethod p);
  std::size_t cache_bytes() const { return (k_.size() + v_.size()) * sizeof(float); }
  void reset() { seen_ = 0; }

 private:
  // Runs n tokens that fit (see append) and writes their logits to out ((n, V) or the last row; null: none).
  void forward_rows(const std::int32_t* tokens, int n, float* out, bool all_logits);
  // Attention of rows a0 .. a0+n-1 (q in qkv_) over the cached keys of layer l, into att_.
  void attend_cached(int l, long a0, int n, const ParamView& pv);

  Transformer& m_;
  ModelConfig c_;
  int S_ = 0;
  bool slide_ = false;
  long seen_ = 0;
  Buffer<float> k_, v_;                 // (n_layer, S, KVD)
  std::vector<float> inv_freq_;         // rope
  float scale_ = 0.0f;                  // attention_factor^2 / sqrt(hd)
  std::vector<float> alibi_;            // slopes
  // scratch for one append (grown as needed)
  Buffer<float> x_, xn_, mean_, rstd_, qkv_, full_, att_, proj_, fc_, act_, logits_;
};

}  // namespace stretch
