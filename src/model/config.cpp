#include "model/config.hpp"

#include "core/error.hpp"

namespace stretch {

void ModelConfig::validate(const std::function<std::string(const std::string&)>& name) const {
  auto bad = [&](const std::string& field, const std::string& what) {
    throw ConfigError((name ? name(field) : field) + ": " + what);
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
  if (position == PositionMethod::rope && head_dim() % 2 != 0)
    bad("n_head", "rope needs an even head size, got n_embd / n_head = " + std::to_string(head_dim()));
  if (!(dropout >= 0.0f && dropout < 1.0f)) bad("dropout", "expected a value in [0, 1), got " + std::to_string(dropout));
  if (!(rope_base > 1.0)) bad("rope_base", "expected a value > 1, got " + std::to_string(rope_base));
}

nlohmann::json ModelConfig::to_json() const {
  return {{"architecture", "gpt"},
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
          {"rope_base", rope_base}};
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) throw InputError(source + ": model config must be a JSON object");
  ModelConfig c;
  auto get_int = [&](const char* key, int& dst) {
    if (!j.contains(key)) throw InputError(source + ": missing field '" + key + "'");
    if (!j[key].is_number_integer()) throw InputError(source + ": field '" + key + "' must be an integer");
    dst = j[key].get<int>();
  };
  auto get_bool = [&](const char* key, bool& dst) {
    if (!j.contains(key)) return;  // optional, default kept
    if (!j[key].is_boolean()) throw InputError(source + ": field '" + key + "' must be true or false");
    dst = j[key].get<bool>();
  };
  if (j.contains("architecture") && j["architecture"] != "gpt")
    throw InputError(source + ": field 'architecture' is " + j["architecture"].dump() + ", expected \"gpt\"");
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
  try {
    c.validate([&](const std::string& f) { return source + ": field '" + f + "'"; });
  } catch (const ConfigError& e) {
    throw InputError(e.what());
  }
  return c;
}

}  // namespace stretch
