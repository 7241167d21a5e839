// The decoder-only transformer (docs/MODEL.md), pre-norm, with a choice of position method, in two families
// (ModelConfig::arch): gpt (LayerNorm, GELU MLP, optional biases) and llama (RMSNorm, SwiGLU MLP, grouped-query
// attention, no biases). Both share one parameter slab layout scheme (model/params.hpp) and one code path.
//
// Shapes: B batch, T time, C = n_embd, NH heads, NKV key/value heads, hd = C / NH, F = mlp_hidden, V = vocab_size;
// QKV = C + 2 NKV hd (fused projection rows), FW = F (gpt) or 2F (llama: gate | up).
// Inputs: tokens (B, T) and targets (B, T) int32 (a negative target is not scored); positions pos (B, T) int32,
// by default pos[b, t] = t. Positions are data: shifted, randomized or interpolated positions need no special
// case below.
//
// forward() runs the network; with need_grad it also starts the backward pass at the classifier (the logits'
// gradient is computed chunk by chunk and never stored whole), and backward() finishes it, accumulating (+=)
// into grads(). Without need_grad (evaluation, generation) the layers share one scratch and attention is the
// tiled online-softmax kernel, so memory grows linearly in T and no T x T tensor exists.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "core/buffer.hpp"
#include "core/rng.hpp"
#include "kernels/bf16.hpp"
#include "model/config.hpp"
#include "model/params.hpp"

namespace stretch {

// How training stores attention for the backward pass (kernels/attention.hpp, kernels/attention_tiled.hpp):
//   materialized  the (B, NH, T, T) softmax probabilities per layer (the AVX-512 register-blocked kernel)
//   tiled         only a log-sum-exp per row, (B, NH, T) per layer; the backward pass recomputes the scores
//                 (flash-style): memory linear in T
//   automatic     tiled when the probabilities of one layer would exceed kMaterializedLimitBytes, else
//                 materialized (faster at short lengths; docs/PERFORMANCE.md)
enum class TrainingAttention { automatic, materialized, tiled };

// Precision of the matrix products (every Linear layer and the classifier; kernels/matmul.hpp):
//   fp32  everything in fp32 (the default)
//   bf16  mixed precision: the products' operands (weights, their inputs, the incoming gradients) rounded to
//         bfloat16, accumulation and results in fp32; parameters, gradients, optimizer state, norms, attention,
//         softmax and loss stay fp32 (bf16 keeps fp32's exponent range, so no loss scaling is needed)
enum class Precision { fp32, bf16 };

// How the weights are kept (inference: eval, passkey and generate --precision):
//   fp32  the parameter slab, params() (the default; training always)
//   bf16  the matrices (every Linear's weight, the token embedding, the classifier: kept_in_bf16) in bfloat16
//         only, once, in bf16_params() at their slab offsets; their fp32 values are released from params()
//         (Buffer::release: zero, and the pages leave memory) and never read. Norms, biases and the position
//         tables stay fp32. Products run as under Precision::bf16 (bf16 operands, fp32 accumulation), without the
//         per-forward conversion: the logits equal, bit for bit, a Precision::bf16 forward over fp32 weights
//         that hold the same bf16 values (the token embedding too is looked up from its bf16 values).
//         Inference only: training, initialising, saving a checkpoint and merging an adapter need the fp32
//         weights (ConfigError; the exporters load their models in fp32).
enum class WeightStorage { fp32, bf16 };
inline constexpr std::size_t kMaterializedLimitBytes = std::size_t(64) << 20;

struct ForwardOptions {
  bool need_grad = false;    // keep what backward() needs and compute the classifier's gradient
  bool training = false;     // apply dropout (needs rng)
  bool keep_logits = false;  // store all (B, T, V) logits for logits()
  float loss_scale = 1.0f;   // gradients are of loss_scale * mean loss (1 / accumulation steps)
  Rng* rng = nullptr;        // dropout masks
};

class Transformer {
 public:
  explicit Transformer(const ModelConfig& c);  // validates (ConfigError); parameters start at zero

  void init_weights(std::uint64_t seed);  // GPT-2's initialisation (docs/MODEL.md)
  // The adapter's tensors alone (model/lora.hpp: A Kaiming-uniform, B = 0), the base untouched: a LoRA fine-tune's
  // start. Nothing without an adapter.
  void init_adapter(std::uint64_t seed);

  const ModelConfig& config() const { return cfg_; }
  // Run-time context settings (model/config.hpp ContextParams): they override what the checkpoint stored and
  // leave the weights untouched. ConfigError on values the config refuses (e.g. a rope scaling on a model without
  // rope), and the model keeps its settings. Self-Extend / ReRoPE (rope, alibi, t5) are evaluation settings: a
  // training forward refuses them; ALiBi interpolation takes a target length (alibi models; 0 turns it off).
  void set_context(const ContextParams& p);
  void set_rope_scaling(const RopeScaling& s);
  void set_attn_window(int window);
  void set_logn(LognMode mode);
  void set_extension(const PositionExtension& e);
  void set_alibi_interp(int target);
  void set_training_attention(TrainingAttention a) { training_attention_ = a; }
  // LongLoRA's shifted sparse attention in training forwards (kernels/attention_tiled.hpp KeyRange): groups of
  // `group` positions, half the heads shifted by group / 2; 0 turns it off. Training then uses the tiled kernels;
  // evaluation and generation keep full attention. ConfigError for 1 or a negative size.
  void set_shifted_groups(int group);
  int shifted_groups() const { return s2_group_; }
  void set_precision(Precision p) { precision_ = p; }
  Precision precision() const { return precision_; }
  // fp32 -> bf16: tensor by tensor, fill(spec, its place in params()) when given (a loader writes the tensor's
  // values there: run/checkpoint.cpp load_model), then a kept tensor is rounded into the bf16 copy and its fp32
  // pages released, so the fp32 matrices are never all resident. Without fill: the current values.
  // bf16 -> fp32: widens them back (exact); fill must be empty. ConfigError for bf16 on a model with an unmerged
  // LoRA adapter.
  void store_weights(WeightStorage s, const std::function<void(const ParamSpec&, float*)>& fill = {});
  WeightStorage weight_storage() const { return storage_; }
  static bool kept_in_bf16(const ParamSpec& s) {
    return s.kind == ParamKind::matrix || s.kind == ParamKind::embedding;
  }
  // The bf16 weights, laid out as params() (only the kept_in_bf16 tensors' ranges hold values); empty unless
  // WeightStorage::bf16 or a Precision::bf16 forward made its copy.
  bf16_t* bf16_params() { return params_bf16_.data(); }
  // ConfigError naming `what` when the weights are not in the fp32 slab (training, initialising, saving, merging)
  void require_fp32_weights(const char* what) const;
  // Whether a training forward of (B, T) uses the tiled kernels.
  bool tiled_training(int B, int T) const;
  // The rotary frequencies and attention factor in use (rope models), for tests and reports.
  const std::vector<float>& rope_frequencies() const { return rope_inv_freq_; }
  float attention_scale() const;  // attention_factor^2 / sqrt(hd)
  const std::vector<ParamSpec>& specs() const { return specs_; }
  Buffer<float>& params() { return params_; }
  const Buffer<float>& params() const { return params_; }
  Buffer<float>& grads() { return grads_; }
  const Buffer<float>& grads() const { return grads_; }
  std::size_t num_parameters() const;  // without padding
  // Which tensors train (one flag per spec, in specs() order; empty: all). backward() computes no gradient for a
  // frozen tensor (its part of grads() is never written, so a large slab's pages for it are never touched) and
  // zero_grad() zeroes only the trainable ones. A LoRA fine-tune freezes the base (model/lora.hpp).
  void set_trainable(std::vector<char> trainable);
  bool trainable(std::size_t spec) const { return trainable_.empty() || trainable_[spec]; }
  void zero_grad();

  // Returns the mean loss over scored targets (0 when targets is null or nothing is scored).
  double forward(const std::int32_t* tokens, const std::int32_t* targets, const std::int32_t* pos, int B, int T,
                 const ForwardOptions& opt = {});
  void backward();

  // For the inference paths that drive the blocks themselves (model/decoder.cpp), in the model's weight storage
  // (a training setting, Precision::bf16 over fp32 weights, does not apply):
  //   embed: x (N, C) = the embeddings of tokens at positions pos (before any embedding norm);
  //   infer_linear: out (N, OC) = inp (N, C) @ w^T + b for a weight w inside params(): fp32, or with bf16 storage
  //   the bf16 product on its kept copy.
  void embed(float* x, const std::int32_t* tokens, const int* pos, int N) const;
  void infer_linear(float* out, const float* inp, const float* w, const float* b, int N, int C, int OC);

  const float* token_losses() const { return losses_.data(); }  // (B, T) from the last forward
  const float* logits() const { return logits_.data(); }        // (B, T, V) when keep_logits
  int scored_tokens() const { return scored_; }

 private:
  struct LayerActs {
    Buffer<float> ln1, ln1_mean, ln1_rstd, qkv, probs, atty, res2, ln2, ln2_mean, ln2_rstd, fch, fch_gelu, res3;
    Buffer<float> lse;  // (B, NH, T) row log-sum-exp of the tiled training attention
    Buffer<float> mask_attn, mask_mlp;  // dropout
    // per adapter site (lora_sites_): u = x A^T (N, R); with adapter dropout, the dropped input and its mask
    std::vector<Buffer<float>> lora_u, lora_x, lora_mask;
  };
  void size_layer(LayerActs& a, std::size_t BT, std::size_t probs, std::size_t lse = 0) const;
  void ensure_acts(int B, int T);
  void ensure_infer_acts(int B, int T);
  template <class Fn>
  void with_bias(Fn&& fn, int B);
  void update_rope(int seq_len);
  // far_ (BT, 2C) = q | k of qkv (BT, 3C) rotated at the extension's far positions (model/block.hpp),
  // queries log-n scaled like the near ones
  void far_scores(const float* qkv, int BT);
  // The adapter's sites on base matrix m of layer l: out (N, OC) += their products of x (N, in); backward: dx (N, in)
  // += their input gradient, their A and B gradients accumulated (model/lora.hpp). pv, gv: the views of the pass
  // that calls them (parameters; gradients with frozen tensors null), bound once per pass.
  void lora_forward_matrix(const ParamView& pv, LoraMatrix m, int l, LayerActs& a, float* out, int OC,
                           const float* x, int N, float p_drop, Rng* rng);
  void lora_backward_matrix(const ParamView& pv, const ParamView& gv, LoraMatrix m, int l, LayerActs& a, float* dx,
                            const float* dout, int OC, const float* x, int N);
  // g (a tensor's start in grads_), or null when its tensor is frozen
  float* grad_or_null(float* g) const;
  // the gradient slab's view with frozen tensors null
  ParamView grad_view();
  // Linear layers in the model's precision (fp32: matmul_forward / matmul_backward; bf16: the *_bf16 products on
  // bf16 copies of the weights, made once per forward or kept (WeightStorage::bf16), and of the inputs and incoming
  // gradients, made per call).
  bool bf16_products() const { return precision_ == Precision::bf16 || storage_ == WeightStorage::bf16; }
  void linear_forward(float* out, const float* inp, const float* w, const float* b, int N, int C, int OC);
  void bf16_product(float* out, const float* inp, const float* w, const float* b, int N, int C, int OC);
  void linear_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w, int N,
                       int C, int OC);

  ModelConfig cfg_;
  std::vector<ParamSpec> specs_;
  Buffer<float> params_, grads_;
  std::vector<char> trainable_;  // per spec; empty: all
  std::vector<LoraSite> lora_sites_;
  Buffer<float> lora_tmp_, lora_du_, lora_tmpx_;  // adapter scratch
  float lora_drop_ = 0.0f;                        // the adapter dropout of the last forward
  std::vector<float> alibi_slopes_, rope_inv_freq_;
  double attn_factor_ = 1.0;  // rope scaling's attention factor (YaRN's mscale); scores scale by its square

  // activations and scratch for the last forward
  int B_ = 0, T_ = 0;
  bool acts_tiled_ = false;  // acts_ hold lse (tiled) rather than probs
  TrainingAttention training_attention_ = TrainingAttention::automatic;
  int s2_group_ = 0;  // shifted sparse attention in training (0: off)
  Precision precision_ = Precision::fp32;
  WeightStorage storage_ = WeightStorage::fp32;
  Buffer<bf16_t> params_bf16_, x_bf16_, d_bf16_;  // bf16 weights (per forward), inputs and gradients (per call)
  bool have_grad_state_ = false;
  float dropout_ = 0.0f;
  std::vector<std::int32_t> tokens_, pos_;
  Buffer<float> encoded_, mask_emb_;
  Buffer<float> emb_raw_, emb_mean_, emb_rstd_, demb_raw_;  // embed_norm: the LayerNorm's input and statistics
  std::vector<LayerActs> acts_;  // per layer, kept for backward (training)
  LayerActs infer_;               // one layer's scratch, reused by every layer (inference: no probs stored)
  int infer_B_ = 0, infer_T_ = 0;
  Buffer<float> lnf_, lnf_mean_, lnf_rstd_, losses_, logits_, chunk_;
  Buffer<float> qkvp_, dqkvp_;  // packed q|k|v of NKV heads (grouped-query attention only)
  Buffer<float> far_;           // (B, T, 2C) q | k at the extension's far positions
  Buffer<float> dlnf_, dres_, dtmp_c_, dqkv_, dfch_, dfch2_, t5_partial_, dmasked_;
  int scored_ = 0;
};

}  // namespace stretch
