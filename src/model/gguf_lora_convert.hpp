// LoRA adapters <-> llama.cpp's GGUF LoRA adapter files (`llama-cli --lora FILE`, llama-cpp-python's lora_path), for
// a base written by model/gguf_convert.hpp (the adapter names the base's tensors).
//
// Metadata (llama.cpp src/llama-adapter.cpp): general.architecture (the base's, "llama" or "mpt"), general.type
// "adapter", adapter.type "lora", adapter.lora.alpha (f32), general.name. llama.cpp computes every adapted tensor as
//   W x + (alpha / r) B (A x),   r = the tensor's own rank (B's columns),
// with one alpha for the file, as ours (model/lora.hpp) with r = R.
//
// Tensors (N the layer; row-major (PyTorch) shapes, F32; "in" the base weight's columns, "out" its rows):
//   blk.N.<tensor>.weight.lora_a   (r, in)    our A
//   blk.N.<tensor>.weight.lora_b   (out, r)   our B
// with <tensor> per target:
//   llama  q attn_q, k attn_k, v attn_v, o attn_output, gate ffn_gate, up ffn_up, down ffn_down (one target each;
//          the llama layout keeps our q and k row order, so B's rows are ours)
//   mpt    q, k, v attn_qkv (fused), o attn_output, up ffn_up, down ffn_down
// The fused attn_qkv holding n of our targets gets one adapter of rank n R: A stacks the targets' A, B places each
// target's B on its rows and its own R columns (block-diagonal) times n, since llama.cpp scales that tensor by
// alpha / (n R) (for n = 3 the product n B rounds once in fp32).
// An adapter trained with --train-also (full embedding or norm tensors) cannot be written: llama.cpp's adapters hold
// only A/B pairs (it skips norm vectors). Write the fine-tune's base with the adapter's trained tensors instead
// (`stretch lora extract --format gguf --base-out`).
// Reading one (`stretch lora apply BASE ADAPTER.gguf`) takes any rank per tensor (llama.cpp's convert_lora_to_gguf.py
// writes PEFT adapters this way) and refuses what llama.cpp would not apply the same way.
#pragma once
#include <memory>

#include "io/gguf.hpp"
#include "model/transformer.hpp"

namespace stretch {

// The adapter of `m` (ConfigError when it has none, or when its base has no GGUF layout: gguf_architecture()).
GgufWriter lora_to_gguf(const Transformer& m);

// `base` (no adapter) with a GGUF LoRA adapter put on it, computing what llama.cpp computes with it at scale 1
// (model_with_adapter(): each tensor's scale alpha / r, alpha 0 meaning scale 1 as in llama.cpp; a fused attn_qkv's
// A serves each of q, k, v). InputError naming the file and the key or tensor for: general.type other than
// "adapter", adapter.type other than "lora", an architecture other than the base's, a tensor without its pair, of
// the wrong shape, or not an A/B pair of a projection we adapt (norm vectors, which llama.cpp skips, included).
std::unique_ptr<Transformer> lora_from_gguf(const Transformer& base, const GgufReader& r);

}  // namespace stretch
