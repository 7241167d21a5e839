#include "model/params.hpp"

#include <cmath>
#include <map>

#include "core/error.hpp"
#include "position/t5.hpp"

namespace stretch {

std::size_t ParamSpec::numel() const {
  std::size_t n = 1;
  for (auto d : shape) n *= static_cast<std::size_t>(d);
  return n;
}

std::vector<ParamSpec> gpt_param_specs(const ModelConfig& c) {
  const std::int64_t V = c.vocab_size, C = c.n_embd, F = c.mlp_hidden;
  const float std_w = 0.02f;
  const float std_proj = 0.02f / std::sqrt(2.0f * static_cast<float>(c.n_layer));
  std::vector<ParamSpec> s;
  s.push_back({"wte", {V, C}, ParamKind::embedding, std_w});
  if (c.position == PositionMethod::learned) s.push_back({"wpe", {c.block_size, C}, ParamKind::position, std_w});
  if (c.position == PositionMethod::t5) s.push_back({"t5_bias", {kT5Buckets, c.n_head}, ParamKind::position, 0.0f});
  for (int l = 0; l < c.n_layer; l++) {
    const std::string p = "h." + std::to_string(l) + ".";
    s.push_back({p + "ln_1.weight", {C}, ParamKind::norm, 0});
    if (c.bias) s.push_back({p + "ln_1.bias", {C}, ParamKind::bias, 0});
    s.push_back({p + "attn.c_attn.weight", {3 * C, C}, ParamKind::matrix, std_w});
    if (c.bias) s.push_back({p + "attn.c_attn.bias", {3 * C}, ParamKind::bias, 0});
    s.push_back({p + "attn.c_proj.weight", {C, C}, ParamKind::matrix, std_proj});
    if (c.bias) s.push_back({p + "attn.c_proj.bias", {C}, ParamKind::bias, 0});
    s.push_back({p + "ln_2.weight", {C}, ParamKind::norm, 0});
    if (c.bias) s.push_back({p + "ln_2.bias", {C}, ParamKind::bias, 0});
    s.push_back({p + "mlp.c_fc.weight", {F, C}, ParamKind::matrix, std_w});
    if (c.bias) s.push_back({p + "mlp.c_fc.bias", {F}, ParamKind::bias, 0});
    s.push_back({p + "mlp.c_proj.weight", {C, F}, ParamKind::matrix, std_proj});
    if (c.bias) s.push_back({p + "mlp.c_proj.bias", {C}, ParamKind::bias, 0});
  }
  s.push_back({"ln_f.weight", {C}, ParamKind::norm, 0});
  if (c.bias) s.push_back({"ln_f.bias", {C}, ParamKind::bias, 0});
  if (!c.tie_embeddings) s.push_back({"lm_head.weight", {V, C}, ParamKind::matrix, std_w});
  std::size_t off = 0;
  for (auto& p : s) {
    p.offset = off;
    off += (p.numel() + 15) / 16 * 16;
  }
  return s;
}

std::size_t slab_size(const std::vector<ParamSpec>& specs) {
  if (specs.empty()) return 0;
  return specs.back().offset + (specs.back().numel() + 15) / 16 * 16;
}

GptView bind_gpt_view(const ModelConfig& c, const std::vector<ParamSpec>& specs, float* slab) {
  std::map<std::string, float*> at;
  for (auto& p : specs) at[p.name] = slab + p.offset;
  auto get = [&](const std::string& n) -> float* {
    auto it = at.find(n);
    return it == at.end() ? nullptr : it->second;
  };
  GptView v;
  v.wte = get("wte");
  v.wpe = get("wpe");
  v.t5_bias = get("t5_bias");
  for (int l = 0; l < c.n_layer; l++) {
    const std::string p = "h." + std::to_string(l) + ".";
    v.layers.push_back({get(p + "ln_1.weight"), get(p + "ln_1.bias"), get(p + "attn.c_attn.weight"),
                        get(p + "attn.c_attn.bias"), get(p + "attn.c_proj.weight"), get(p + "attn.c_proj.bias"),
                        get(p + "ln_2.weight"), get(p + "ln_2.bias"), get(p + "mlp.c_fc.weight"),
                        get(p + "mlp.c_fc.bias"), get(p + "mlp.c_proj.weight"), get(p + "mlp.c_proj.bias")});
  }
  v.lnf_w = get("ln_f.weight");
  v.lnf_b = get("ln_f.bias");
  v.lm_head = c.tie_embeddings ? v.wte : get("lm_head.weight");
  return v;
}

}  // namespace stretch
