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
//
// Attention sinks (StreamingLLM, Xiao et al. 2023), `keep` = N >= 0: the first N tokens stay in slots 0 .. N-1
// for good, the later ones share a ring of R = S - N slots, and the model slides indefinitely in bounded memory,
// for rope, alibi, t5 and none models (sinusoidal and learned ones add a token's position to its embedding once,
// so it cannot follow the token's slot: refused, as is --attn-window, the ring being the window). Positions are
// the tokens' places in the cache, as StreamingLLM assigns them: once the cache is full, the query at index
// a >= S sits at position S - 1, sink t at t, and the window token with index j at S - 1 - (a - j) (its distance
// to the query is its true distance a - j; a sink's is S - 1 - t, not a - t). Before the cache is full every
// position is the token's index. RoPE keys are therefore cached unrotated and rotated per query at these
// positions (StreamingLLM's "cache the keys before the rotary transformation"), ALiBi and T5 biases use the
// same distances, and log-n scaling the query's cache position. A one-layer model's logits then equal a full
// forward over [sinks + window] at positions 0 .. S-1 (tested; deeper layers' cached keys carry what their
// tokens saw when they entered, as in any rolling cache).
//
// Self-Extend and ReRoPE (position/extension.hpp) are exact here too: keys are cached unrotated and each query
// rotates the keys within its neighbour window at their positions and the others at the far key positions, and
// itself at its position and at the far query position (two score sets, chosen per key by distance). With sinks
// the positions are the cache positions above.
//
// The cache's element type (KvType): f32, or bf16 / f16, half the memory and half the bytes that every decoded
// token reads. Keys (rotated or not, as above) and values are rounded once as they enter (kernels/half.hpp) and
// widened back to fp32 per (token, kv head) where attention reads them, so scores, softmax and P V stay fp32. A
// first chunk (a prompt's prefill) attends over its own fp32 keys and values; every token after it reads the cache.
#pragma once
#include <cstdint>
#include <utility>
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

enum class KvType { f32, bf16, f16 };
std::size_t kv_type_bytes(KvType t);  // 4 or 2

class Decoder {
 public:
  // ctx: cache slots (>= 1). slide: drop the oldest tokens when full (alibi, t5 and none models only unless
  // keep >= 0; ConfigError for others). keep >= 0: attention sinks (above; needs slide, keep < ctx, a rope, alibi,
  // t5 or none model and no attention window; ConfigError naming keep otherwise). Errors name the arguments
  // "ctx", "slide", "keep" and the model's "attn_window" as `name` maps them (the command: to its flags); by
  // default as they are. kv: the cache's element type (above). The model must outlive the decoder and not change
  // meanwhile.
  Decoder(Transformer& model, int ctx, bool slide, int keep = -1, const FieldNames& name = {},
          KvType kv = KvType::f32);

  // Feeds tokens[0 .. n) and returns their logits, (n, V) when all_logits, else the last row's (V).
  const float* append(const std::int32_t* tokens, int n, bool all_logits = false);

  long length() const { return seen_; }          // tokens fed since construction / reset()
  int capacity() const { return S_; }
  bool can_slide() const { return slide_; }
  int sinks() const { return keep_; }  // -1: no attention sinks
  // Whether a model with this position method can slide past its cache (its scores depend only on distances).
  static bool can_slide(PositionMethod p);
  std::size_t cache_bytes() const {
    return (k_.size() + v_.size()) * sizeof(float) + (k16_.size() + v16_.size()) * sizeof(std::uint16_t);
  }
  void reset() { seen_ = 0; }

 private:
  // Runs n tokens that fit (see append) and writes their logits to out ((n, V) or the last row; null: none).
  void forward_rows(const std::int32_t* tokens, int n, float* out, bool all_logits);
  // A prefill from an empty cache, rows 0 .. n-1 at positions pos: a full causal forward of the chunk (q | k | v in
  // qkv_, rotated unless positional_) into att (n, C).
  void prefill_attention(float* att, const int* pos, int n, const ParamView& pv);
  // Attention of rows a0 .. a0+n-1 (q in qkv_) over the cached keys of layer l, into att_.
  void attend_cached(int l, long a0, int n, const ParamView& pv);
  // The keys visible to the query with index a, as up to three runs of consecutive slots and positions (in
  // increasing position), and the query's position; returns the number of keys.
  struct Run {
    long slot = 0, count = 0, pos = 0;
  };
  long visible(long a, Run* runs, int& n_runs, long& qpos) const;
  long query_position(long a) const;

  Transformer& m_;
  ModelConfig c_;
  int S_ = 0;
  bool slide_ = false;
  int keep_ = -1;            // attention sinks (-1: none)
  bool positional_ = false;  // rope keys cached unrotated, rotated per query (sinks, Self-Extend, ReRoPE)
  long seen_ = 0;
  KvType kv_ = KvType::f32;
  Buffer<float> k_, v_;                 // (n_layer, S, KVD): the f32 cache
  Buffer<std::uint16_t> k16_, v16_;     // (n_layer, S, KVD): the bf16 / f16 cache
  // the n values at src into cache slot row dst (f32: k_ / v_; else k16_ / v16_), as the cache's type
  void store(bool key, std::size_t at, const float* src, std::size_t n);
  // rows [slot, slot + count) of layer l's keys (key) or values, the hd columns of kv head g: a pointer and row
  // stride into an f32 cache, or widened into scratch (count, hd) for a 16-bit one
  std::pair<const float*, long> rows(bool key, int l, long slot, long count, int g, float* scratch) const;
  std::vector<float> inv_freq_;         // rope
  // positional mode: cos and sin (S, hd/2) of the positions 0 .. S-1, of their far query and far key positions
  std::vector<float> cos_, sin_, fq_cos_, fq_sin_, fk_cos_, fk_sin_;
  float scale_ = 0.0f;                  // attention_factor^2 / sqrt(hd)
  std::vector<float> alibi_;            // slopes
  // scratch for one append (grown as needed)
  Buffer<float> x_, xn_, mean_, rstd_, qkv_, full_, far_, att_, proj_, fc_, act_, logits_;
};

}  // namespace stretch
