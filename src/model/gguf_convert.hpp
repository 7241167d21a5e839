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
//   RoPE scaling, when the model has one:
//     linear -> llama.rope.scaling.type "linear", llama.rope.scaling.factor (f32, s; llama.cpp uses 1/s as
//               freq_scale), llama.rope.scaling.original_context_length (u32, L_train)
//     yarn   -> the same with type "yarn", plus llama.rope.scaling.yarn_beta_fast / yarn_beta_slow (f32; llama.cpp's
//               defaults are 32 and 1, ours too). llama.cpp's YaRN attention factor is
//               attn_factor * (1 + 0.1 ln s) = ours with attention_factor 0 (the default); a non-default
//               attention_factor is refused (ConfigError).
//     ntk    -> no scaling keys: the NTK-aware base change is static, so llama.rope.freq_base is written as
//               base * s^(d/(d-2)) (identical frequencies; importing gives rope_base changed and no scaling).
//     dynamic-ntk, yarn-paper: ConfigError (llama.cpp cannot express them).
//   Also refused: attention windows, log-n attention, embed_scale != 1 (none has a llama-architecture key).
//   Tokenizer (llama2c tokenizers only; others: ConfigError): tokenizer.ggml.model "llama",
//   tokenizer.ggml.tokens (" " turned back into SentencePiece's "▁" U+2581; llama2.c's "\n<s>\n" / "\n</s>\n" for
//   ids 1 / 2 written as SentencePiece's "<s>" / "</s>"), tokenizer.ggml.scores (f32),
//   tokenizer.ggml.token_type (i32: 1 normal, 2 unknown (id 0), 3 control (<s>, </s>), 6 byte (<0xXX>)),
//   tokenizer.ggml.bos_token_id 1, eos_token_id 2, unknown_token_id 0 (u32).
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

// ConfigError (naming what) for a model or tokenizer the llama GGUF layout cannot hold (see above).
GgufWriter llama_to_gguf(const Transformer& m, const Tokenizer& tok, std::uint32_t type = ggml_type::F32);

struct GgufModel {
  std::unique_ptr<Transformer> model;
  // The tokenizer metadata as stored (pieces with "▁"); empty when the file has none.
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int> token_types;
  int bos = -1, eos = -1;
};

// InputError naming the source and the key or tensor for anything missing, mistyped or of the wrong shape.
GgufModel llama_from_gguf(const GgufReader& r);

}  // namespace stretch
