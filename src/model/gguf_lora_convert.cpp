#include "model/gguf_lora_convert.hpp"

#include <algorithm>
#include <map>
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

std::unique_ptr<Transformer> lora_from_gguf(const Transformer& base, const GgufReader& r) {
  const std::string src = r.source();
  const ModelConfig& bc = base.config();
  std::string arch;
  try {
    arch = gguf_architecture(bc);
  } catch (const ConfigError& e) {
    throw InputError(src + ": the base has no GGUF layout for an adapter to name (" + e.what() + ")");
  }
  auto want = [&](const char* key, const std::string& value) {
    if (!r.has(key) || r.get_string(key) != value)
      throw InputError(src + ": " + key + " must be \"" + value + "\"" +
                       (r.has(key) ? std::string(", got \"") + r.get_string(key) + "\"" : std::string(" (absent)")) +
                       (std::string(key) == "general.architecture" ? " (the base's architecture)" : ""));
  };
  want("general.type", "adapter");
  want("adapter.type", "lora");
  want("general.architecture", arch);
  const double alpha = r.has("adapter.lora.alpha") ? static_cast<double>(r.get_f32("adapter.lora.alpha")) : 0.0;
  if (!(alpha >= 0.0)) throw InputError(src + ": adapter.lora.alpha must be >= 0");

  std::map<std::string, bool> used;
  for (const GgufTensorInfo& t : r.tensors()) used[t.name] = false;
  std::vector<LoraPiece> pieces;
  for (int l = 0; l < bc.n_layer; l++)
    for (const GgufLoraTensor& t : gguf_lora_tensors(bc, arch)) {
      const std::string name = "blk." + std::to_string(l) + "." + t.name + ".weight";
      const std::string an = name + ".lora_a", bn = name + ".lora_b";
      if (!r.has_tensor(an) && !r.has_tensor(bn)) continue;
      if (!r.has_tensor(an) || !r.has_tensor(bn))
        throw InputError(src + ": tensor '" + (r.has_tensor(an) ? bn : an) + "' is missing (lora_a and lora_b come "
                         "in pairs)");
      const auto& sa = r.tensor(an).shape_rowmajor;
      const auto& sb = r.tensor(bn).shape_rowmajor;
      if (sa.size() != 2 || sa[1] != t.in || sa[0] < 1)
        throw InputError(src + ": tensor '" + an + "' must be (r, " + std::to_string(t.in) + ")");
      const int rank = static_cast<int>(sa[0]);
      if (sb.size() != 2 || sb[0] != t.rows || sb[1] != rank)
        throw InputError(src + ": tensor '" + bn + "' must be (" + std::to_string(t.rows) + ", " +
                         std::to_string(rank) + ")");
      const std::vector<float> A = r.read_f32(an), B = r.read_f32(bn);
      used[an] = used[bn] = true;
      const double scale = alpha > 0.0 ? alpha / rank : 1.0;  // llama.cpp: alpha 0 means scale 1
      const std::size_t rr = static_cast<std::size_t>(rank);
      for (const GgufLoraPart& part : t.parts) {
        LoraPiece p{l, part.target, rank, scale, t.parts.size() > 1, A, {}};
        p.B.assign(B.begin() + static_cast<std::ptrdiff_t>(part.offset * rr),
                   B.begin() + static_cast<std::ptrdiff_t>((part.offset + part.rows) * rr));
        pieces.push_back(std::move(p));
      }
    }
  for (const auto& [name, u] : used)
    if (!u)
      throw InputError(src + ": tensor '" + name + "' is not the lora_a / lora_b of a projection stretch adapts "
                       "(blk.N.<tensor>.weight.lora_a / .lora_b; norm vectors and embeddings are not read)");
  // the targets the file's tensors cover: in a fused attn_qkv all three, even where the file adapts only some (its
  // B rows are zero there: the same function)
  try {
    return model_with_adapter(base, pieces, 0.0f, src);
  } catch (const ConfigError& e) {
    throw InputError(src + ": " + e.what());
  }
}

}  // namespace stretch
