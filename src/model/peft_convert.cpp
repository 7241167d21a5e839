#include "model/peft_convert.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/error.hpp"
#include "model/hf_layout.hpp"
#include "model/lora.hpp"

namespace stretch {
using nlohmann::json;

namespace {

using Part = LoraPart;  // one of our targets inside a transformers projection (model/lora.hpp)

// One transformers projection of block `layer`: the rows [m0, m0 + rows) of our base matrix, laid out by xf, and the
// targets it holds.
struct PeftModule {
  std::string name;  // "model.layers.0.self_attn.q_proj"
  std::string key;   // its name within a block: "self_attn.q_proj" (target_modules matches on it)
  LoraMatrix matrix;
  int m0 = 0, rows = 0, in = 0;
  hf::Xf xf = hf::Xf::copy;
  int heads = 0;
  std::vector<Part> parts;
};

std::vector<PeftModule> peft_modules(HfFamily f, const ModelConfig& c, int layer) {
  const int C = c.n_embd, KVD = c.kv_dim(), F = c.mlp_hidden, NH = c.n_head, NKV = c.kv_heads();
  const std::string L = std::to_string(layer);
  using T = LoraTarget;
  using M = LoraMatrix;
  using X = hf::Xf;
  std::vector<PeftModule> out;
  auto add = [&](const std::string& prefix, std::string key, M m, int m0, int rows, int in, X xf, int heads,
                 std::vector<Part> parts) {
    for (Part& part : parts)
      if (part.rows == 0) part.rows = rows;  // a module of one target: all of it
    out.push_back({prefix + key, std::move(key), m, m0, rows, in, xf, heads, std::move(parts)});
  };
  const std::vector<Part> qkv = {{T::q, 0, C}, {T::k, C, C}, {T::v, 2 * C, C}};  // gpt: no grouped-query attention
  if (hf::llama_like(f)) {
    const std::string p = "model.layers." + L + ".";
    add(p, "self_attn.q_proj", M::qkv, 0, C, C, X::rope_rows, NH, {{T::q, 0}});
    add(p, "self_attn.k_proj", M::qkv, C, KVD, C, X::rope_rows, NKV, {{T::k, 0}});
    add(p, "self_attn.v_proj", M::qkv, C + KVD, KVD, C, X::copy, 0, {{T::v, 0}});
    add(p, "self_attn.o_proj", M::attproj, 0, C, C, X::copy, 0, {{T::o, 0}});
    add(p, "mlp.gate_proj", M::fc, 0, F, C, X::copy, 0, {{T::gate, 0}});
    add(p, "mlp.up_proj", M::fc, F, F, C, X::copy, 0, {{T::up, 0}});
    add(p, "mlp.down_proj", M::fcproj, 0, C, F, X::copy, 0, {{T::down, 0}});
  } else if (f == HfFamily::gpt2) {
    const std::string p = "transformer.h." + L + ".";
    add(p, "attn.c_attn", M::qkv, 0, 3 * C, C, X::copy, 0, qkv);
    add(p, "attn.c_proj", M::attproj, 0, C, C, X::copy, 0, {{T::o, 0}});
    add(p, "mlp.c_fc", M::fc, 0, F, C, X::copy, 0, {{T::up, 0}});
    add(p, "mlp.c_proj", M::fcproj, 0, C, F, X::copy, 0, {{T::down, 0}});
  } else if (f == HfFamily::mpt) {
    const std::string p = "transformer.blocks." + L + ".";
    add(p, "attn.Wqkv", M::qkv, 0, 3 * C, C, X::copy, 0, qkv);
    add(p, "attn.out_proj", M::attproj, 0, C, C, X::copy, 0, {{T::o, 0}});
    add(p, "ffn.up_proj", M::fc, 0, F, C, X::copy, 0, {{T::up, 0}});
    add(p, "ffn.down_proj", M::fcproj, 0, C, F, X::copy, 0, {{T::down, 0}});
  } else {  // bloom
    const std::string p = "transformer.h." + L + ".";
    add(p, "self_attention.query_key_value", M::qkv, 0, 3 * C, C, X::bloom_qkv, NH, qkv);
    add(p, "self_attention.dense", M::attproj, 0, C, C, X::copy, 0, {{T::o, 0}});
    add(p, "mlp.dense_h_to_4h", M::fc, 0, F, C, X::copy, 0, {{T::up, 0}});
    add(p, "mlp.dense_4h_to_h", M::fcproj, 0, C, F, X::copy, 0, {{T::down, 0}});
  }
  return out;
}

const std::string kPrefix = "base_model.model.";

// The HF row of our row o (relative to the module's first row) of module m.
std::int64_t module_row(const PeftModule& m, int hd, std::int64_t o) { return hf::hf_row(m.xf, m.heads, hd, o); }

}  // namespace

PeftAdapter model_to_peft(const Transformer& m, HfFamily f) {
  const ModelConfig& c = m.config();
  if (!c.lora.enabled()) throw ConfigError("PEFT export: the model has no LoRA adapter");
  const int R = c.lora.rank, hd = c.head_dim();
  const ConstParamView p = bind_param_view(c, m.specs(), m.params().data());
  PeftAdapter out;
  json targets = json::array(), rank_pattern = json::object(), alpha_pattern = json::object();
  for (int l = 0; l < c.n_layer; l++)
    for (const PeftModule& mod : peft_modules(f, c, l)) {
      StackedLora st = stack_lora(p, c.lora, l, mod.parts, mod.rows, mod.in,
                                  [&](std::int64_t o) { return module_row(mod, hd, o); });
      if (st.r == 0) continue;
      const int n = st.r / R, r = st.r;
      if (l == 0) {
        targets.push_back(mod.key);
        if (n > 1) {
          rank_pattern[mod.key] = r;
          alpha_pattern[mod.key] = n * c.lora.alpha;
        }
      }
      out.tensors.push_back({kPrefix + mod.name + ".lora_A.weight", {r, mod.in}, std::move(st.A)});
      out.tensors.push_back({kPrefix + mod.name + ".lora_B.weight", {mod.rows, r}, std::move(st.B)});
    }
  out.config = {{"peft_type", "LORA"},
                {"task_type", "CAUSAL_LM"},
                {"r", R},
                {"lora_alpha", c.lora.alpha},
                {"lora_dropout", c.lora.dropout},
                {"target_modules", targets},
                {"rank_pattern", rank_pattern},
                {"alpha_pattern", alpha_pattern},
                {"bias", "none"},
                {"fan_in_fan_out", f == HfFamily::gpt2},  // GPT-2's Conv1D stores (in, out)
                {"modules_to_save", nullptr},
                {"use_rslora", false},
                {"use_dora", false},
                {"init_lora_weights", true},
                {"inference_mode", true},
                {"layers_to_transform", nullptr},
                {"layers_pattern", nullptr},
                {"base_model_name_or_path", nullptr},
                {"revision", nullptr}};
  return out;
}

std::unique_ptr<Transformer> peft_to_model(const Transformer& base, HfFamily f, const json& config,
                                           const SafetensorsReader& weights, const std::string& source) {
  const std::string cfg_src = source + "/adapter_config.json";
  if (!config.is_object()) throw InputError(cfg_src + ": expected a JSON object");
  auto key_is = [&](const char* key, const json& ok) {
    if (config.contains(key) && !config[key].is_null() && config[key] != ok)
      throw InputError(cfg_src + ": '" + key + "' is " + config[key].dump() + "; stretch reads " + ok.dump() +
                       " only");
  };
  key_is("peft_type", "LORA");
  key_is("bias", "none");
  key_is("use_dora", false);
  key_is("use_rslora", false);
  key_is("lora_bias", false);
  for (const char* k : {"modules_to_save", "layers_to_transform", "layers_pattern", "trainable_token_indices"})
    if (config.contains(k) && !config[k].is_null() && !(config[k].is_array() && config[k].empty()))
      throw InputError(cfg_src + ": '" + k + "' is " + config[k].dump() +
                       "; stretch reads adapters on every layer's projections, without saved modules");
  if (!config.contains("lora_alpha") || !config["lora_alpha"].is_number())
    throw InputError(cfg_src + ": 'lora_alpha' must be a number");
  const double alpha0 = config["lora_alpha"].get<double>();
  const json alpha_pattern = config.value("alpha_pattern", json::object());
  if (!alpha_pattern.is_object()) throw InputError(cfg_src + ": 'alpha_pattern' must be an object");
  double lora_dropout = 0.0;
  if (config.contains("lora_dropout") && config["lora_dropout"].is_number()) lora_dropout = config["lora_dropout"].get<double>();

  const ModelConfig& bc = base.config();
  if (bc.lora.enabled()) throw InputError(source + ": the base model already holds an adapter (merge it first)");
  const int hd = bc.head_dim();
  // every lora tensor of the file, by name; each must be used exactly once
  std::map<std::string, bool> used;
  for (const TensorEntry& t : weights.tensors()) used[t.name] = false;
  std::vector<LoraPiece> pieces;
  for (int l = 0; l < bc.n_layer; l++)
    for (const PeftModule& mod : peft_modules(f, bc, l)) {
      const std::string an = kPrefix + mod.name + ".lora_A.weight", bn = kPrefix + mod.name + ".lora_B.weight";
      if (!weights.has(an) && !weights.has(bn)) continue;
      if (!weights.has(an) || !weights.has(bn))
        throw InputError(source + ": '" + (weights.has(an) ? bn : an) + "' is missing (its lora_A and lora_B come "
                         "in pairs)");
      const TensorEntry& ea = weights.entry(an);
      if (ea.shape.size() != 2 || ea.shape[1] != mod.in || ea.shape[0] < 1)
        throw InputError(source + ": tensor '" + an + "' must be (r, " + std::to_string(mod.in) + ")");
      const int r = static_cast<int>(ea.shape[0]);
      std::vector<float> A(static_cast<std::size_t>(r) * mod.in), B(static_cast<std::size_t>(mod.rows) * r);
      weights.read_into(an, {r, mod.in}, A.data());
      weights.read_into(bn, {mod.rows, r}, B.data());
      used[an] = used[bn] = true;
      double alpha = alpha0;
      for (auto& [k, v] : alpha_pattern.items()) {
        if (k.find_first_of("^$*+?()[]{}|\\") != std::string::npos)
          throw InputError(cfg_src + ": alpha_pattern key '" + k + "' is a regular expression; stretch matches "
                           "module names (suffixes) only");
        if ((mod.name == k || (mod.name.size() > k.size() && mod.name.compare(mod.name.size() - k.size(), k.size(), k) == 0 &&
                               mod.name[mod.name.size() - k.size() - 1] == '.')) && v.is_number())
          alpha = v.get<double>();
      }
      if (!(alpha > 0.0)) throw InputError(cfg_src + ": the alpha of " + mod.name + " must be > 0");
      split_lora(l, mod.parts, r, alpha / r, A, B, [&](std::int64_t o) { return module_row(mod, hd, o); }, pieces);
    }
  for (const auto& [name, u] : used)
    if (!u)
      throw InputError(source + ": tensor '" + name + "' is not a LoRA matrix of a projection stretch adapts (" +
                       std::string(hf_architecture(f)) + " modules: " + [&] {
                         std::string s;
                         for (const PeftModule& m : peft_modules(f, bc, 0)) s += (s.empty() ? "" : ", ") + m.key;
                         return s;
                       }() + ")");
  return model_with_adapter(base, pieces, static_cast<float>(lora_dropout), source);
}

}  // namespace stretch
