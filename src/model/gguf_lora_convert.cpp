#include "model/gguf_lora_convert.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "model/gguf_convert.hpp"
#include "model/lora.hpp"

namespace stretch {

namespace {

// One of our targets inside a GGUF tensor: its rows [offset, offset + rows) of the tensor.
struct GgufLoraPart {
  LoraTarget target;
  int offset, rows;
};

// One base tensor of a GGUF block and the targets it holds.
struct GgufLoraTensor {
  const char* name;
  int rows, in;
  std::vector<GgufLoraPart> parts;
};

std::vector<GgufLoraTensor> gguf_lora_tensors(const ModelConfig& c, const std::string& arch) {
  const int C = c.n_embd, KVD = c.kv_dim(), F = c.mlp_hidden;
  using T = LoraTarget;
  if (arch == "llama")
    return {{"attn_q", C, C, {{T::q, 0, C}}},
            {"attn_k", KVD, C, {{T::k, 0, KVD}}},
            {"attn_v", KVD, C, {{T::v, 0, KVD}}},
            {"attn_output", C, C, {{T::o, 0, C}}},
            {"ffn_gate", F, C, {{T::gate, 0, F}}},
            {"ffn_up", F, C, {{T::up, 0, F}}},
            {"ffn_down", C, F, {{T::down, 0, C}}}};
  // mpt: no grouped-query attention (gguf_architecture refuses it)
  return {{"attn_qkv", 3 * C, C, {{T::q, 0, C}, {T::k, C, C}, {T::v, 2 * C, C}}},
          {"attn_output", C, C, {{T::o, 0, C}}},
          {"ffn_up", F, C, {{T::up, 0, F}}},
          {"ffn_down", C, F, {{T::down, 0, C}}}};
}

}  // namespace

GgufWriter lora_to_gguf(const Transformer& m) {
  const ModelConfig& c = m.config();
  if (!c.lora.enabled()) throw ConfigError("GGUF adapter export: the model has no LoRA adapter");
  const std::string arch = gguf_architecture(c);
  const int R = c.lora.rank;
  GgufWriter w;
  w.set_string("general.architecture", arch);
  w.set_string("general.type", "adapter");
  w.set_string("general.name", "stretch-lora-r" + std::to_string(R) + "-" + c.lora.targets_string());
  w.set_string("adapter.type", "lora");
  w.set_f32("adapter.lora.alpha", static_cast<float>(c.lora.alpha));

  const ConstParamView p = bind_param_view(c, m.specs(), m.params().data());
  for (int l = 0; l < c.n_layer; l++)
    for (const GgufLoraTensor& t : gguf_lora_tensors(c, arch)) {
      std::vector<GgufLoraPart> parts;
      for (const GgufLoraPart& part : t.parts)
        if (c.lora.has(part.target)) parts.push_back(part);
      if (parts.empty()) continue;
      const int n = static_cast<int>(parts.size()), r = n * R;
      std::vector<float> A(static_cast<std::size_t>(r) * t.in, 0.0f), B(static_cast<std::size_t>(t.rows) * r, 0.0f);
      for (int k = 0; k < n; k++) {
        const GgufLoraPart& part = parts[static_cast<std::size_t>(k)];
        const float* a = p.lora_a[l][static_cast<int>(part.target)];
        const float* b = p.lora_b[l][static_cast<int>(part.target)];
        std::copy(a, a + static_cast<std::size_t>(R) * t.in, A.begin() + static_cast<std::ptrdiff_t>(k) * R * t.in);
        for (int o = 0; o < part.rows; o++)
          for (int j = 0; j < R; j++)
            B[static_cast<std::size_t>(part.offset + o) * r + static_cast<std::size_t>(k * R + j)] =
                static_cast<float>(n) * b[static_cast<std::size_t>(o) * R + j];
      }
      const std::string name = "blk." + std::to_string(l) + "." + t.name + ".weight";
      w.add_tensor(name + ".lora_a", {r, t.in}, ggml_type::F32, A.data());
      w.add_tensor(name + ".lora_b", {t.rows, r}, ggml_type::F32, B.data());
    }
  return w;
}

}  // namespace stretch
