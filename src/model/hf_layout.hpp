// How Hugging Face lays out the rows of the projections we fuse or rotate differently (model/hf_convert.hpp): shared
// by the weight converter and the PEFT adapter converter (model/peft_convert.hpp), which moves an adapter's B rows
// the same way as the weight rows they add to.
#pragma once
#include <cstdint>

#include "model/hf_convert.hpp"

namespace stretch::hf {

// How one HF tensor's rows map onto ours.
enum class Xf {
  copy,       // same layout
  transpose,  // HF stores (in, out) (GPT-2's Conv1D); ours (out, in)
  rope_rows,  // q or k rows (or biases) of `heads` heads: ours[h hd + 2i + j] = hf[h hd + i + j hd/2], j = 0, 1
  bloom_qkv,  // HF rows [h][q|k|v][hd] -> ours [q|k|v][h][hd] (weights or biases)
};

// The HF row that our row `o` of a rope_rows or bloom_qkv block comes from (copy and transpose: o).
inline std::int64_t hf_row(Xf xf, int heads, std::int64_t hd, std::int64_t o) {
  if (xf == Xf::copy || xf == Xf::transpose) return o;
  const std::int64_t h = o / hd, k = o % hd;
  if (xf == Xf::rope_rows) return h * hd + (k % 2) * (hd / 2) + k / 2;  // ours[2i + j] = hf[i + j hd/2]
  const std::int64_t C = static_cast<std::int64_t>(heads) * hd;       // bloom_qkv: ours [part][h][d]
  const std::int64_t part = o / C, head = (o % C) / hd, d = o % hd;
  return (head * 3 + part) * hd + d;                                   // hf [h][part][d]
}

// LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM: one tensor layout
inline bool llama_like(HfFamily f) {
  return f == HfFamily::llama || f == HfFamily::mistral || f == HfFamily::qwen2;
}

}  // namespace stretch::hf
