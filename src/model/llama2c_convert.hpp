// llama2.c checkpoints <-> our llama-architecture Transformer.
//
// llama2.c (io/llama2c.hpp) stores wq, wk, wv, w1, w3 separately; we fuse them (model/params.hpp):
//   layers.l.attention.wqkv.weight  rows [wq (C) | wk (KVD) | wv (KVD)]        (C + 2 KVD, C)
//   layers.l.feed_forward.w13.weight rows [w1 (F) | w3 (F)]  (gate | up)       (2F, C)
//   tok_embeddings, attention_norm (rms_att), attention.wo, ffn_norm (rms_ffn), feed_forward.w2, norm
//   (rms_final), output (wcls, when not shared) map one to one.
// The config: arch llama, position rope (interleaved pairs, base 10000: llama2.c's fixed choice), no biases,
// RMSNorm eps 1e-5, block_size = seq_len (the trained length), tie_embeddings = shared classifier.
#pragma once
#include <memory>

#include "io/llama2c.hpp"
#include "model/transformer.hpp"

namespace stretch {

ModelConfig llama2c_model_config(const Llama2cConfig& c);

// A model holding the checkpoint's weights (bit-identical values).
std::unique_ptr<Transformer> model_from_llama2c(const Llama2cWeights& w);

// The reverse (export): ConfigError when the model is not a llama2.c-expressible one (arch llama, rope with
// base 10000 and no scaling, no window or log-n).
Llama2cWeights model_to_llama2c(const Transformer& m);

}  // namespace stretch
