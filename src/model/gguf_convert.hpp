// Our models <-> llama.cpp's GGUF files (io/gguf.hpp reads and writes the container). Two architectures:
//   arch llama (position rope)                          <-> general.architecture "llama"
//   arch gpt, position alibi | none | learned | sinusoidal <-> general.architecture "mpt" (llama.cpp's MPT graph:
//        LayerNorm, fused qkv, GELU MLP, optional biases, optional learned position table, ALiBi when
//        mpt.attention.max_alibi_bias > 0)
// Other models (gpt with rope or t5, windows, log-n attention, ...) are refused by name (ConfigError).
//
// ---- llama ----
// Our llama-family models <-> llama.cpp's GGUF "llama" architecture (io/gguf.hpp reads and writes the container).
//
// Tensors (GGUF name <- ours; shapes row-major (PyTorch) as in docs/MODEL.md; N the layer):
//   token_embd.weight          <- tok_embeddings.weight                                  (V, C)
//   blk.N.attn_norm.weight     <- layers.N.attention_norm.weight                         (C)       always F32
//   blk.N.attn_q.weight        <- layers.N.attention.wqkv.weight rows [0, C)             (C, C)
//   blk.N.attn_k.weight        <- layers.N.attention.wqkv.weight rows [C, C + KVD)       (KVD, C)
//   blk.N.attn_v.weight        <- layers.N.attention.wqkv.weight rows [C + KVD, C + 2KVD) (KVD, C)
//   blk.N.attn_output.weight   <- layers.N.attention.wo.weight                           (C, C)
//   blk.N.ffn_norm.weight      <- layers.N.ffn_norm.weight                               (C)       always F32
//   blk.N.ffn_gate.weight      <- layers.N.feed_forward.w13.weight rows [0, F)  (w1)     (F, C)
//   blk.N.ffn_up.weight        <- layers.N.feed_forward.w13.weight rows [F, 2F) (w3)     (F, C)
//   blk.N.ffn_down.weight      <- layers.N.feed_forward.w2.weight                        (C, F)
//   output_norm.weight         <- norm.weight                                            (C)       always F32
//   output.weight              <- output.weight, only when untied (absent: tied to token_embd)  (V, C)
//   rope_freqs.weight          <- rope scaling llama3 / longrope only: theta_i / theta'_i (below)  (hd/2)  F32
// 1-D tensors are always F32 (llama.cpp expects that); 2-D weights are stored in the requested type. Q8_0 needs
// the row length (the last dimension) to be a multiple of 32: a weight whose row length is not (e.g. ffn_down of
// stories260K, F = 172) is stored as F16 instead, as llama.cpp's quantizer falls back for such tensors.
//
// RoPE: ours rotates interleaved pairs (2i, 2i+1) of each head (Meta's / llama2.c's layout). llama.cpp builds the
// llama architecture with rope type LLAMA_ROPE_TYPE_NORM (ggml's "normal" mode: adjacent pairs), so q and k are
// written as they are; no permutation. (HF checkpoints use the half-split NEOX layout, which is why llama.cpp's
// convert_hf_to_gguf.py permutes attn_q / attn_k for LlamaForCausalLM; llama2.c / Meta weights need none.)
//
// Metadata (llama.cpp key names, src/llama-arch.cpp LLM_KV_NAMES with arch "llama"):
//   general.architecture "llama", general.name, general.file_type (u32: 0 all F32, 1 mostly F16, 7 mostly Q8_0)
//   llama.vocab_size, llama.context_length (block_size), llama.embedding_length (C), llama.block_count,
//   llama.feed_forward_length (F), llama.attention.head_count, llama.attention.head_count_kv,
//   llama.rope.dimension_count (head_dim), llama.rope.freq_base (f32), llama.attention.layer_norm_rms_epsilon
//   (f32); all counts u32.
//   RoPE scaling, when the model has one (L = rope_train_length(): original_context, else block_size):
//     linear   -> llama.rope.scaling.type "linear", llama.rope.scaling.factor (f32, s; llama.cpp uses 1/s as
//                 freq_scale), llama.rope.scaling.original_context_length (u32, L)
//     yarn     -> the same with type "yarn", plus llama.rope.scaling.yarn_beta_fast / yarn_beta_slow (f32; llama.cpp's
//                 defaults are 32 and 1, ours too). ggml multiplies cos and sin by attn_factor * (1 + 0.1 ln s), so
//                 a non-default attention factor a (attention_factor, or mscale / mscale_all_dim) is written as
//                 llama.rope.scaling.attn_factor = a / (1 + 0.1 ln s) (f32; absent for the default) and read back
//                 as attention_factor = attn_factor * (1 + 0.1 ln s). truncate=0 is refused (ggml always floors /
//                 ceils the correction range).
//     llama3   -> llama.cpp's rope_freqs.weight tensor (F32, head_dim/2: the divisor of each pair's angle,
//                 theta_i / theta'_i, what llama.cpp's converter writes for Llama 3.1; llama.cpp's graph divides
//                 theta by it) and no llama.rope.scaling.type, plus our keys stretch.rope.scaling.type "llama3",
//                 stretch.rope.scaling.factor / low_freq_factor / high_freq_factor (f64) and
//                 stretch.rope.scaling.original_context_length (u32, L), so the import gets llama3 back exactly
//                 (and checks the table against them within 1e-5).
//     longrope -> only when short_factor == long_factor: rope_freqs.weight = the factors, and its attention factor
//                 (if not 1) as llama.rope.scaling.attn_factor (llama.cpp applies it as is without yarn). A file
//                 with rope_freqs.weight and no stretch.* keys (llama.cpp's own Llama 3.1 files) imports as
//                 longrope:1 with short_factor = long_factor = the table and attention factor attn_factor (1 when
//                 absent): the same frequencies at every length, up to the table's f32 rounding.
//     ntk      -> no scaling keys: the NTK-aware base change is static, so llama.rope.freq_base is written as
//                 base * s^(d/(d-2)) (identical frequencies; importing gives rope_base changed and no scaling).
//     dynamic-ntk, yarn-paper, longrope with short_factor != long_factor: ConfigError (llama.cpp's llama
//                 architecture cannot express them). Import refuses rope_freqs.weight together with a
//                 llama.rope.scaling.type other than none, and attn_factor != 1 with linear or no scaling.
//   Also refused: attention windows, log-n attention, embed_scale != 1 (none has a llama-architecture key).
//   Tokenizer (llama2c tokenizers only; others: ConfigError): tokenizer.ggml.model "llama",
//   tokenizer.ggml.tokens (" " turned back into SentencePiece's "▁" U+2581; llama2.c's "\n<s>\n" / "\n</s>\n" for
//   ids 1 / 2 written as SentencePiece's "<s>" / "</s>"), tokenizer.ggml.scores (f32),
//   tokenizer.ggml.token_type (i32: 1 normal, 2 unknown (id 0), 3 control (<s>, </s>), 6 byte (<0xXX>)),
//   tokenizer.ggml.bos_token_id 1, eos_token_id 2, unknown_token_id 0 (u32).
//
// ---- mpt ----
// Tensors (GGUF name <- ours; N the layer; C width, F MLP width, V vocabulary, L block_size):
//   token_embd.weight          <- embed_scale * wte                                         (V, C)
//   position_embd.weight       <- wpe (learned), or the sinusoids of positions 0 .. L-1      (L, C)    F32
//                                 (sinusoidal); absent for alibi and none
//   blk.N.attn_norm.weight     <- h.N.ln_1.weight           (.bias <- h.N.ln_1.bias)         (C)       F32
//   blk.N.attn_qkv.weight      <- h.N.attn.c_attn.weight (q | k | v rows)                    (3C, C)
//   blk.N.attn_qkv.bias        <- h.N.attn.c_attn.bias                                       (3C)      F32
//   blk.N.attn_output.weight   <- h.N.attn.c_proj.weight    (.bias <- h.N.attn.c_proj.bias)  (C, C)
//   blk.N.ffn_norm.weight      <- h.N.ln_2.weight           (.bias <- h.N.ln_2.bias)         (C)       F32
//   blk.N.ffn_up.weight        <- h.N.mlp.c_fc.weight       (.bias <- h.N.mlp.c_fc.bias)     (F, C)
//   blk.N.ffn_down.weight      <- h.N.mlp.c_proj.weight     (.bias <- h.N.mlp.c_proj.bias)   (C, F)
//   output_norm.weight         <- ln_f.weight               (.bias <- ln_f.bias)             (C)       F32
//   output.weight              <- lm_head.weight (untied), or wte when tied and embed_scale != 1 (V, C)
// (1-D tensors, biases included, are F32; matrices in the requested type, with the Q8_0 fallback above.)
// Biases are written only for models with biases (llama.cpp's MPT takes each one as optional), so the mapping is
// exact either way. An embed_scale s != 1 is folded into token_embd and the output matrix is written apart: the
// embedding is then s * w exactly as ours computes it, and the logits use the unscaled w, so the logits are
// identical. (Import then gives an untied model with embed_scale 1 and the same logits.) A sinusoidal model
// becomes a position table of L rows (llama.cpp cannot go past L with it; imported it is a learned model).
// ALiBi: mpt.attention.max_alibi_bias b (our alibi_max_bias) gives ggml's slopes 2^(-b(h+1)/H) (H a power of two;
// otherwise the interleaved sequence), the same as position/alibi.hpp; llama.cpp adds -slope * |i - j| to the scores.
// GELU: both the tanh approximation (ggml's CPU GELU reads a float16 table: not bit-identical there); a model with
// the exact GELU, an embedding LayerNorm or q/k/v biases is refused (no layout here holds them).
// Metadata: general.architecture "mpt", mpt.context_length (L), mpt.embedding_length, mpt.block_count,
// mpt.feed_forward_length, mpt.attention.head_count, mpt.attention.head_count_kv (= head_count),
// mpt.attention.layer_norm_epsilon (f32), mpt.attention.max_alibi_bias (f32 b, alibi only).
// Import refuses what our GPT cannot compute: a negative max_alibi_bias, mpt.attention.clamp_kqv, q/k
// LayerNorms (attn_q_norm), activation scales (ffn_act), grouped-query heads. Missing biases import as zeros.
//
// ---- tokenizers (any architecture) ----
//   llama2c tokenizer  -> tokenizer.ggml.model "llama" (above)
//   gpt2 tokenizer     -> tokenizer.ggml.model "gpt2", tokenizer.ggml.pre "gpt-2", tokenizer.ggml.tokens (GPT-2's
//                         byte alphabet), tokenizer.ggml.merges, token_type (3 for <|endoftext|>, else 1),
//                         bos/eos_token_id = <|endoftext|>, tokenizer.ggml.add_bos_token false
//   byte tokenizer     -> the same "gpt2" model with 256 tokens (token b is byte b in GPT-2's alphabet) and no
//                         merges: llama.cpp then tokenizes every byte as its own token, as ours does
//   sentencepiece      -> refused (ConfigError; export it through a llama2c tokenizer.bin)
//
// Import reads the same keys (integers of any width, floats f32 or f64) and tensors stored as F32, F16, BF16 or
// Q8_0. A missing, mistyped or wrongly shaped key or tensor is an InputError naming it. The imported
// rope_scaling.original_context is 0 (meaning block_size) when the file's original_context_length equals
// llama.context_length, so exported models compare equal to their source.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/gguf.hpp"
#include "io/tokenizer.hpp"
#include "model/transformer.hpp"

namespace stretch {

// "llama" or "mpt": the GGUF architecture a model of this config is written as; ConfigError (naming the field) for
// a model neither layout can hold (see above). The context settings (rope scaling) are checked by model_to_gguf.
std::string gguf_architecture(const ModelConfig& mc);

// ConfigError (naming what) for a model or tokenizer neither GGUF layout can hold (see above).
GgufWriter model_to_gguf(const Transformer& m, const Tokenizer& tok, std::uint32_t type = ggml_type::F32);

struct GgufModel {
  std::unique_ptr<Transformer> model;
  // The tokenizer metadata as stored; tokenizer_model "" (and the rest empty) when the file has none.
  std::string tokenizer_model;  // tokenizer.ggml.model: "llama", "gpt2", ...
  std::string tokenizer_pre;    // tokenizer.ggml.pre ("" when absent)
  std::vector<std::string> tokens;  // llama: pieces with "▁"; gpt2: GPT-2's byte alphabet
  std::vector<float> scores;
  std::vector<int> token_types;
  std::vector<std::string> merges;  // gpt2
  int bos = -1, eos = -1;
};

// general.architecture "llama" or "mpt". InputError naming the source and the key or tensor for anything
// missing, mistyped or of the wrong shape, and for an architecture or feature we cannot compute.
GgufModel model_from_gguf(const GgufReader& r);

}  // namespace stretch
