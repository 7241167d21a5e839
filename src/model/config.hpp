// What a GPT checkpoint stores about its architecture (docs/MODEL.md). Runtime choices (context length at
// evaluation, batch size, threads) live elsewhere.
#pragma once
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "position/method.hpp"

namespace stretch {

struct ModelConfig {
  int vocab_size = 256;
  int n_layer = 6;
  int n_head = 8;
  int n_embd = 256;
  int mlp_hidden = 1024;
  int block_size = 256;  // training length L; the size of the learned position table
  PositionMethod position = PositionMethod::alibi;
  bool bias = true;            // biases in Linear layers and LayerNorms
  bool tie_embeddings = true;  // output projection shares wte
  float dropout = 0.0f;
  double rope_base = 10000.0;

  int head_dim() const { return n_embd / n_head; }
  // Throws ConfigError naming the field and what was expected. `name` maps a field name ("n_head") to what the
  // user knows it as (a flag such as "--heads", or "config.json: n_head").
  void validate(const std::function<std::string(const std::string&)>& name = {}) const;
  nlohmann::json to_json() const;
  // Throws InputError naming `source` and the field for a missing or mistyped field.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& source);
};

}  // namespace stretch
