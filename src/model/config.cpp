#include "model/config.hpp"

#include <limits>

#include "core/error.hpp"
#include "core/json_int.hpp"

namespace stretch {

std::string_view to_string(Arch a) { return a == Arch::llama ? "llama" : "gpt"; }

Arch parse_arch(std::string_view name, std::string_view what) {
  if (name == "gpt") return Arch::gpt;
  if (name == "llama") return Arch::llama;
  throw UsageError(std::string(what) + ": unknown architecture '" + std::string(name) + "' (expected gpt or llama)");
}

std::string_view to_string(Activation a) { return a == Activation::gelu ? "gelu" : "gelu_tanh"; }

Activation parse_activation(std::string_view name, std::string_view what) {
  if (name == "gelu_tanh" || name == "gelu-tanh") return Activation::gelu_tanh;
  if (name == "gelu") return Activation::gelu;
  throw UsageError(std::string(what) + ": unknown activation '" + std::string(name) +
                   "' (expected gelu_tanh, the tanh approximation, or gelu, the exact erf form)");
}

void ModelConfig::validate(const std::function<std::string(const std::string&)>& name) const {
  auto bad = [&](const std::string& field, const std::string& what) {
    throw ConfigError((name ? name(field) : field_ref(field)) + ": " + what);
  };
  auto range = [&](const std::string& field, long v, long lo, long hi) {
    if (v < lo || v > hi)
      bad(field, "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                     std::to_string(v));
  };
  range("vocab_size", vocab_size, 2, 1 << 24);
  range("n_layer", n_layer, 1, 1024);
  range("n_head", n_head, 1, 1024);
  range("n_embd", n_embd, 1, 1 << 16);
  range("mlp_hidden", mlp_hidden, 1, 1 << 18);
  range("block_size", block_size, 1, 1 << 22);
  if (n_embd % n_head != 0)
    bad("n_head", "must divide n_embd (" + std::to_string(n_embd) + " is not a multiple of " +
                      std::to_string(n_head) + ")");
  range("n_kv_head", n_kv_head, 0, n_head);
  if (n_head % kv_heads() != 0)
    bad("n_kv_head", "must divide n_head (" + std::to_string(n_head) + " query heads, " +
                         std::to_string(kv_heads()) + " key/value heads)");
  if (arch == Arch::gpt && kv_heads() != n_head)
    bad("n_kv_head", "grouped-query attention is a llama-architecture feature; gpt models need n_kv_head = n_head");
  if (arch == Arch::llama && bias)
    bad("bias", "llama-architecture models have no biases (expected false; q/k/v biases are qkv_bias)");
  if (arch == Arch::llama && activation != Activation::gelu_tanh)
    bad("activation", "llama-architecture models use SwiGLU; the GELU choice applies to gpt models");
  if (arch == Arch::llama && embed_norm)
    bad("embed_norm", "the embedding LayerNorm is a gpt-architecture feature (expected false)");
  if (arch == Arch::gpt && qkv_bias)
    bad("qkv_bias", "is for llama-architecture models; gpt models have all biases or none (field bias)");
  if (position != PositionMethod::alibi && alibi_max_bias != 8.0)
    bad("alibi_max_bias", "applies only to alibi models (position is " + std::string(to_string(position)) + ")");
  if (!(alibi_max_bias > 0.0 && alibi_max_bias <= 1024.0))
    bad("alibi_max_bias", "expected a value in (0, 1024], got " + std::to_string(alibi_max_bias));
  if (!(norm_eps > 0.0f && norm_eps < 1.0f)) bad("norm_eps", "expected a value in (0, 1), got " + std::to_string(norm_eps));
  range("attn_window", attn_window, 0, 1 << 30);
  if (!(embed_scale > 0.0f && embed_scale < 1e4f))
    bad("embed_scale", "expected a value in (0, 10000), got " + std::to_string(embed_scale));
  try {
    rope_scaling.validate();
  } catch (const ConfigError& e) {
    bad("rope_scaling", e.what());
  }
  if (rope_scaling.type == RopeScalingType::longrope && position == PositionMethod::rope &&
      (rope_scaling.short_factor.size() != static_cast<std::size_t>(head_dim() / 2) ||
       rope_scaling.long_factor.size() != static_cast<std::size_t>(head_dim() / 2)))
    bad("rope_scaling", "longrope needs head_dim / 2 = " + std::to_string(head_dim() / 2) +
                            " factors in short_factor and long_factor (got " +
                            std::to_string(rope_scaling.short_factor.size()) + " and " +
                            std::to_string(rope_scaling.long_factor.size()) + ")");
  if (!rope_scaling.is_none() && position != PositionMethod::rope)
    bad("rope_scaling", "only applies to rope models (position is " + std::string(to_string(position)) + ")");
  if (position == PositionMethod::rope && head_dim() % 2 != 0)
    bad("n_head", "rope needs an even head size, got n_embd / n_head = " + std::to_string(head_dim()));
  try {
    extension.validate();
  } catch (const ConfigError& e) {
    bad("extension", e.what());
  }
  if (!extension.is_none() && !extendable(position))
    bad("extension", extension.to_string() + " applies to rope, alibi and t5 models only (position is " +
                         std::string(to_string(position)) + ")");
  if (!extension.is_none() && extension.window >= extension_train_length())
    bad("extension", "the window " + std::to_string(extension.window) + " must be smaller than the trained length " +
                         std::to_string(extension_train_length()) + " (distances from it on were never trained)");
  if (alibi_interp != 0 && position != PositionMethod::alibi)
    bad("alibi_interp", "applies to alibi models only (position is " + std::string(to_string(position)) + ")");
  if (alibi_interp != 0 && (alibi_interp < block_size || alibi_interp > (1 << 30)))
    bad("alibi_interp", "the target length must be at least the trained length " + std::to_string(block_size) +
                            ", got " + std::to_string(alibi_interp));
  if (!(dropout >= 0.0f && dropout < 1.0f)) bad("dropout", "expected a value in [0, 1), got " + std::to_string(dropout));
  if (!(rope_base > 1.0)) bad("rope_base", "expected a value > 1, got " + std::to_string(rope_base));
  lora.validate(arch, name);
}

nlohmann::json ModelConfig::to_json() const {
  nlohmann::json j = {{"architecture", std::string(to_string(arch))},
          {"vocab_size", vocab_size},
          {"n_layer", n_layer},
          {"n_head", n_head},
          {"n_embd", n_embd},
          {"mlp_hidden", mlp_hidden},
          {"block_size", block_size},
          {"position", std::string(to_string(position))},
          {"bias", bias},
          {"tie_embeddings", tie_embeddings},
          {"dropout", dropout},
          {"rope_base", rope_base},
          {"norm_eps", norm_eps}};
  if (kv_heads() != n_head) j["n_kv_head"] = kv_heads();
  if (embed_scale != 1.0f) j["embed_scale"] = embed_scale;
  if (activation != Activation::gelu_tanh) j["activation"] = std::string(to_string(activation));
  if (embed_norm) j["embed_norm"] = true;
  if (qkv_bias) j["qkv_bias"] = true;
  if (alibi_max_bias != 8.0) j["alibi_max_bias"] = alibi_max_bias;
  if (!rope_scaling.is_none()) j["rope_scaling"] = rope_scaling.to_json();
  if (attn_window > 0) j["attn_window"] = attn_window;
  if (logn != LognMode::off) j["logn"] = to_string(logn);
  if (position_ids.kind != PositionIdsKind::plain) j["position_ids"] = position_ids.to_json();
  if (!extension.is_none()) j["extension"] = extension.to_json();
  if (alibi_interp > 0) j["alibi_interp"] = alibi_interp;
  if (lora.enabled()) j["lora"] = lora.to_json();
  return j;
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) throw InputError(source + ": model config must be a JSON object");
  ModelConfig c;
  auto get_int = [&](const char* key, int& dst) {
    if (!j.contains(key)) throw InputError(source + ": missing field '" + key + "'");
    if (!j[key].is_number_integer()) throw InputError(source + ": field '" + key + "' must be an integer");
    const auto v = json_int_in(j[key]);  // 64 bits, checked, then narrowed: never wrapped into range
    if (!v)
      throw InputError(source + ": field '" + key + "' is " + j[key].dump() + ", far outside its range (at most " +
                       std::to_string(std::numeric_limits<int>::max()) + ")");
    dst = *v;
  };
  auto get_bool = [&](const char* key, bool& dst) {
    if (!j.contains(key)) return;  // optional, default kept
    if (!j[key].is_boolean()) throw InputError(source + ": field '" + key + "' must be true or false");
    dst = j[key].get<bool>();
  };
  if (j.contains("architecture")) {
    if (!j["architecture"].is_string() ||
        (j["architecture"] != "gpt" && j["architecture"] != "llama"))
      throw InputError(source + ": field 'architecture' is " + j["architecture"].dump() +
                       ", expected \"gpt\" or \"llama\"");
    c.arch = parse_arch(j["architecture"].get<std::string>(), source + ": field 'architecture'");
    if (c.arch == Arch::llama) c.bias = false;
  }
  get_int("vocab_size", c.vocab_size);
  get_int("n_layer", c.n_layer);
  get_int("n_head", c.n_head);
  get_int("n_embd", c.n_embd);
  get_int("mlp_hidden", c.mlp_hidden);
  get_int("block_size", c.block_size);
  if (!j.contains("position") || !j["position"].is_string())
    throw InputError(source + ": field 'position' must be a string (one of " + position_method_choices() + ")");
  try {
    c.position = parse_position_method(j["position"].get<std::string>(), source + ": field 'position'");
  } catch (const UsageError& e) {
    throw InputError(e.what());
  }
  get_bool("bias", c.bias);
  get_bool("tie_embeddings", c.tie_embeddings);
  if (j.contains("dropout")) {
    if (!j["dropout"].is_number()) throw InputError(source + ": field 'dropout' must be a number");
    c.dropout = j["dropout"].get<float>();
  }
  if (j.contains("rope_base")) {
    if (!j["rope_base"].is_number()) throw InputError(source + ": field 'rope_base' must be a number");
    c.rope_base = j["rope_base"].get<double>();
  }
  if (j.contains("n_kv_head")) get_int("n_kv_head", c.n_kv_head);
  if (j.contains("norm_eps")) {
    if (!j["norm_eps"].is_number()) throw InputError(source + ": field 'norm_eps' must be a number");
    c.norm_eps = j["norm_eps"].get<float>();
  }
  if (j.contains("rope_scaling")) c.rope_scaling = RopeScaling::from_json(j["rope_scaling"], source + ": field 'rope_scaling'");
  if (j.contains("attn_window")) get_int("attn_window", c.attn_window);
  if (j.contains("extension")) c.extension = PositionExtension::from_json(j["extension"], source + ": field 'extension'");
  if (j.contains("alibi_interp")) get_int("alibi_interp", c.alibi_interp);
  if (j.contains("lora")) c.lora = LoraConfig::from_json(j["lora"], source + ": field 'lora'");
  if (j.contains("embed_scale")) {
    if (!j["embed_scale"].is_number()) throw InputError(source + ": field 'embed_scale' must be a number");
    c.embed_scale = j["embed_scale"].get<float>();
  }
  get_bool("embed_norm", c.embed_norm);
  get_bool("qkv_bias", c.qkv_bias);
  if (j.contains("alibi_max_bias")) {
    if (!j["alibi_max_bias"].is_number()) throw InputError(source + ": field 'alibi_max_bias' must be a number");
    c.alibi_max_bias = j["alibi_max_bias"].get<double>();
  }
  try {
    if (j.contains("activation")) {
      if (!j["activation"].is_string())
        throw InputError(source + ": field 'activation' must be a string (gelu_tanh or gelu)");
      c.activation = parse_activation(j["activation"].get<std::string>(), source + ": field 'activation'");
    }
    if (j.contains("logn")) {
      if (!j["logn"].is_string()) throw InputError(source + ": field 'logn' must be a string (off, full or beyond)");
      c.logn = parse_logn_mode(j["logn"].get<std::string>(), source + ": field 'logn'");
    }
    if (j.contains("position_ids")) c.position_ids = PositionIds::from_json(j["position_ids"], source + ": field 'position_ids'");
  } catch (const ConfigError& e) {
    throw InputError(e.what());
  } catch (const UsageError& e) {
    throw InputError(e.what());
  }
  try {
    c.validate([&](const std::string& f) { return source + ": field '" + f + "'"; });
  } catch (const ConfigError& e) {
    throw InputError(e.what());
  }
  return c;
}

}  // namespace stretch
