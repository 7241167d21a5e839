// Reader for llama2.c checkpoints (https://github.com/karpathy/llama2.c, run.c), the "legacy" version-0
// export (export.py's legacy_export / the original tinyllamas files such as stories260K.bin).
//
// Layout: a header of 7 little-endian int32
//   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
// where a negative vocab_size means the classifier is NOT shared with the token embedding (a separate wcls
// tensor follows at the end) and a positive one means it is shared (tied). Then little-endian float32 tensors,
// back to back, no padding, in this order. Matrices are row-major in PyTorch nn.Linear order (out, in): run.c's
// matmul(xout, x, w, n, d) computes xout[i] = sum_j w[i*n + j] * x[j] for i < d, i.e. W has d = out rows and
// n = in columns, and export.py writes each nn.Linear .weight tensor (shape (out, in)) flattened as is.
// head_size = dim / n_heads, kv_dim = n_kv_heads * head_size (n_heads * head_size == dim).
//
//   tensor           shape (rows x cols per layer, PyTorch (out, in))
//   tok_embeddings   (vocab, dim)
//   rms_att          (n_layers, dim)
//   wq               (n_layers, n_heads*head_size = dim, dim)     out = q features, in = dim
//   wk               (n_layers, kv_dim, dim)
//   wv               (n_layers, kv_dim, dim)
//   wo               (n_layers, dim, n_heads*head_size = dim)
//   rms_ffn          (n_layers, dim)
//   w1               (n_layers, hidden_dim, dim)                  gate: silu(w1 x) * (w3 x)
//   w2               (n_layers, dim, hidden_dim)                  down projection
//   w3               (n_layers, hidden_dim, dim)                  up projection
//   rms_final        (dim)
//   freq_cis_real    (seq_len, head_size/2)                       legacy RoPE table: present, skipped
//   freq_cis_imag    (seq_len, head_size/2)                       legacy RoPE table: present, skipped
//   wcls             (vocab, dim)                                 only when vocab_size < 0 (unshared)
//
// The file size pins down only the element counts; (out, in) versus (in, out) for the non-square matrices is
// the convention of run.c/export.py above (the count is the same either way); checked on stories260K.bin with
// a numpy forward pass: (out, in) greedily generates "Once upon a time, there was a little girl named Lily...",
// reading the non-square matrices transposed generates "edededed...". stories260K.bin
// (dim 64, hidden 172, 5 layers, 8 heads, 4 kv heads, vocab +512, seq_len 512) is 1,056,540 bytes =
// 28 + 4 * 264,128 floats, i.e. shared classifier, no wcls.
//
// The reader checks the header (every field positive except vocab_size's sign; dim <= 65536,
// hidden_dim <= 1,048,576, n_layers <= 1024, |vocab| <= 10M, seq_len <= 10M; dim % n_heads == 0,
// n_heads % n_kv_heads == 0, head_size even) and that the file holds exactly header + all expected floats;
// every problem is an InputError naming the file. NaN/Inf weights are passed through unchanged.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace stretch {

struct Llama2cConfig {
  int dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0;
  int vocab_size = 0;  // always positive here; the sign in the file is `shared_classifier`
  int seq_len = 0;
  bool shared_classifier = true;  // true: logits use tok_embeddings; false: wcls
  int head_size() const { return n_heads > 0 ? dim / n_heads : 0; }
  int kv_dim() const { return n_kv_heads * head_size(); }
};

struct Llama2cWeights {
  Llama2cConfig config;
  std::vector<float> tok_embeddings, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final;
  std::vector<float> wcls;  // empty when config.shared_classifier
};

// Size of the 7-int32 header in bytes.
inline constexpr std::size_t kLlama2cHeaderBytes = 28;

// Exact file size (bytes) of a legacy checkpoint with this (already validated) config, header included.
std::uint64_t llama2c_file_bytes(const Llama2cConfig& c);

// Maps and validates the whole file (throws InputError naming it); each tensor's pages are dropped from memory
// once copied (core/mapped_file.hpp), so reading peaks at about the weights' size, not weights + file.
Llama2cWeights read_llama2c(const std::filesystem::path& path);
// Parses from memory; `source` names the origin in error messages.
Llama2cWeights parse_llama2c(const std::string& bytes, const std::string& source);

// The file's bytes for these weights (ConfigError when a tensor's size disagrees with the config); the legacy
// freq_cis tables are filled with base-10000 cos/sin as export.py writes them. write_llama2c writes atomically.
std::string serialize_llama2c(const Llama2cWeights& w);
void write_llama2c(const std::filesystem::path& path, const Llama2cWeights& w);

}  // namespace stretch
