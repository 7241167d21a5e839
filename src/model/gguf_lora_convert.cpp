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

// One base tensor of a GGUF block and the targets it holds (model/lora.hpp; GGUF keeps our row order).
struct GgufLoraTensor {
  const char* name;
  int rows, in;
  std::vector<LoraPart> parts;
};

std::int64_t same_row(std::int64_t o) { return o; }

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
      StackedLora st = stack_lora(p, c.lora, l, t.parts, t.rows, t.in, same_row);
      if (st.r == 0) continue;
      // llama.cpp scales the tensor by alpha / (n R): n (exact for n = 1, 2; one fp32 rounding for 3) goes into B
      const float n = static_cast<float>(st.r / R);
      if (n != 1.0f)
        for (float& b : st.B) b *= n;
      const std::string name = "blk." + std::to_string(l) + "." + t.name + ".weight";
      w.add_tensor(name + ".lora_a", {st.r, t.in}, ggml_type::F32, st.A.data());
      w.add_tensor(name + ".lora_b", {t.rows, st.r}, ggml_type::F32, st.B.data());
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
      used[an] = used[bn] = true;
      const double scale = alpha > 0.0 ? alpha / rank : 1.0;  // llama.cpp: alpha 0 means scale 1
      split_lora(l, t.parts, rank, scale, r.read_f32(an), r.read_f32(bn), same_row, pieces);
    }
  for (const auto& [name, u] : used)
    if (!u)
      throw InputError(src + ": tensor '" + name + "' is not the lora_a / lora_b of a projection stretch adapts "
                       "(blk.N.<tensor>.weight.lora_a / .lora_b; norm vectors and embeddings are not read)");
  // the targets the file's tensors cover: in a fused attn_qkv all three, even where the file adapts only some (its
  // B rows are zero there: the same function)
  return model_with_adapter(base, pieces, 0.0f, src);
}

}  // namespace stretch
