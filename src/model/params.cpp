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

std::string ParamSpec::where() const {
  switch (place) {
    case ParamPlace::block:
      return "layer " + std::to_string(layer);
    case ParamPlace::output:
      return "output";
    default:
      return "embeddings";
  }
}

namespace {

// Names of the tensors every family has, by family (docs/MODEL.md). LLaMA names follow Meta's checkpoints, with
// q|k|v fused into wqkv and w1|w3 (gate|up) into w13.
struct Names {
  std::string wte, wpe, t5, ln_emb_w, ln_emb_b, ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, fcproj_w, fcproj_b,
      lnf_w, lnf_b, lm_head;
};

Names names(const ModelConfig& c, int l) {
  const std::string L = std::to_string(l);
  if (c.arch == Arch::llama) {
    const std::string p = "layers." + L + ".";
    return {"tok_embeddings.weight", "wpe", "t5_bias", "", "", p + "attention_norm.weight", "",
            p + "attention.wqkv.weight", p + "attention.wqkv.bias",
            p + "attention.wo.weight", "", p + "ffn_norm.weight", "", p + "feed_forward.w13.weight", "",
            p + "feed_forward.w2.weight", "", "norm.weight", "", "output.weight"};
  }
  const std::string p = "h." + L + ".";
  return {"wte", "wpe", "t5_bias", "ln_emb.weight", "ln_emb.bias", p + "ln_1.weight", p + "ln_1.bias", p + "attn.c_attn.weight", p + "attn.c_attn.bias",
          p + "attn.c_proj.weight", p + "attn.c_proj.bias", p + "ln_2.weight", p + "ln_2.bias", p + "mlp.c_fc.weight",
          p + "mlp.c_fc.bias", p + "mlp.c_proj.weight", p + "mlp.c_proj.bias", "ln_f.weight", "ln_f.bias",
          "lm_head.weight"};
}

std::string lora_prefix(const ModelConfig& c, int l) {
  return (c.arch == Arch::llama ? "layers." : "h.") + std::to_string(l) + ".lora.";
}

}  // namespace

std::vector<ParamSpec> param_specs(const ModelConfig& c) {
  const std::int64_t V = c.vocab_size, C = c.n_embd, F = c.mlp_hidden, FW = c.mlp_width(), QKV = c.qkv_width();
  const float std_w = 0.02f;
  const float std_proj = 0.02f / std::sqrt(2.0f * static_cast<float>(c.n_layer));
  std::vector<ParamSpec> s;
  const Names top = names(c, 0);
  // Token embeddings enter as embed_scale * wte: at scale S != 1 they are drawn with std 1/S (unit variance after
  // the scale). The position table is drawn like wte but enters unscaled, so it is 1/S of the tokens, as in
  // fairseq (tokens * sqrt(d), learned positions ~ N(0, 1/d)); at S = 1 both are GPT-2's 0.02.
  const float std_wte = c.embed_scale == 1.0f ? std_w : 1.0f / c.embed_scale;
  s.push_back({top.wte, {V, C}, ParamKind::embedding, std_wte});
  if (c.position == PositionMethod::learned) s.push_back({"wpe", {c.block_size, C}, ParamKind::position, std_wte});
  if (c.position == PositionMethod::t5) s.push_back({"t5_bias", {kT5Buckets, c.n_head}, ParamKind::position, 0.0f});
  if (c.embed_norm) {
    s.push_back({top.ln_emb_w, {C}, ParamKind::norm, 0});
    if (c.bias) s.push_back({top.ln_emb_b, {C}, ParamKind::bias, 0});
  }
  for (int l = 0; l < c.n_layer; l++) {
    const Names n = names(c, l);
    const std::size_t first = s.size();
    s.push_back({n.ln1_w, {C}, ParamKind::norm, 0});
    if (c.bias) s.push_back({n.ln1_b, {C}, ParamKind::bias, 0});
    s.push_back({n.qkv_w, {QKV, C}, ParamKind::matrix, std_w});
    if (c.bias || c.qkv_bias) s.push_back({n.qkv_b, {QKV}, ParamKind::bias, 0});
    s.push_back({n.proj_w, {C, C}, ParamKind::matrix, std_proj});
    if (c.bias) s.push_back({n.proj_b, {C}, ParamKind::bias, 0});
    s.push_back({n.ln2_w, {C}, ParamKind::norm, 0});
    if (c.bias) s.push_back({n.ln2_b, {C}, ParamKind::bias, 0});
    s.push_back({n.fc_w, {FW, C}, ParamKind::matrix, std_w});
    if (c.bias) s.push_back({n.fc_b, {FW}, ParamKind::bias, 0});
    s.push_back({n.fcproj_w, {C, F}, ParamKind::matrix, std_proj});
    if (c.bias) s.push_back({n.fcproj_b, {C}, ParamKind::bias, 0});
    for (std::size_t i = first; i < s.size(); i++) {
      s[i].place = ParamPlace::block;
      s[i].layer = l;
    }
  }
  const std::size_t output = s.size();
  s.push_back({top.lnf_w, {C}, ParamKind::norm, 0});
  if (c.bias) s.push_back({top.lnf_b, {C}, ParamKind::bias, 0});
  if (!c.tie_embeddings) s.push_back({top.lm_head, {V, C}, ParamKind::matrix, std_w});
  for (std::size_t i = output; i < s.size(); i++) s[i].place = ParamPlace::output;
  // the adapter last, so the base tensors keep the offsets they have without one (merge_lora, a LoRA fine-tune
  // starting from a checkpoint: both copy the base as the slab's prefix)
  const std::vector<LoraSite> sites = lora_sites(c);
  const std::int64_t R = c.lora.rank;
  for (int l = 0; l < c.n_layer; l++)
    for (const LoraSite& site : sites) {
      const std::string p = lora_prefix(c, l) + std::string(to_string(site.target));
      s.push_back({p + ".A", {R, site.in}, ParamKind::lora_a, 0.0f, 0, ParamPlace::block, l});
      s.push_back({p + ".B", {site.rows, R}, ParamKind::lora_b, 0.0f, 0, ParamPlace::block, l});
    }
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

namespace {

template <class F>
BasicParamView<F> bind(const ModelConfig& c, const std::vector<ParamSpec>& specs, F* slab) {
  std::map<std::string, F*> at;
  for (auto& p : specs) at[p.name] = slab + p.offset;
  auto get = [&](const std::string& n) -> F* {
    auto it = at.find(n);
    return it == at.end() ? nullptr : it->second;
  };
  BasicParamView<F> v;
  const Names top = names(c, 0);
  v.wte = get(top.wte);
  v.wpe = get("wpe");
  v.t5_bias = get("t5_bias");
  v.ln_emb_w = top.ln_emb_w.empty() ? nullptr : get(top.ln_emb_w);
  v.ln_emb_b = top.ln_emb_b.empty() ? nullptr : get(top.ln_emb_b);
  for (int l = 0; l < c.n_layer; l++) {
    const Names n = names(c, l);
    v.layers.push_back({get(n.ln1_w), get(n.ln1_b), get(n.qkv_w), get(n.qkv_b), get(n.proj_w), get(n.proj_b),
                        get(n.ln2_w), get(n.ln2_b), get(n.fc_w), get(n.fc_b), get(n.fcproj_w), get(n.fcproj_b)});
  }
  v.lnf_w = get(top.lnf_w);
  v.lnf_b = get(top.lnf_b);
  v.lm_head = c.tie_embeddings ? v.wte : get(top.lm_head);
  v.lora_a.assign(c.n_layer, {});
  v.lora_b.assign(c.n_layer, {});
  for (const LoraSite& site : lora_sites(c))
    for (int l = 0; l < c.n_layer; l++) {
      const std::string p = lora_prefix(c, l) + std::string(to_string(site.target));
      v.lora_a[l][static_cast<int>(site.target)] = get(p + ".A");
      v.lora_b[l][static_cast<int>(site.target)] = get(p + ".B");
    }
  return v;
}

}  // namespace

ParamView bind_param_view(const ModelConfig& c, const std::vector<ParamSpec>& specs, float* slab) {
  return bind(c, specs, slab);
}

ConstParamView bind_param_view(const ModelConfig& c, const std::vector<ParamSpec>& specs, const float* slab) {
  return bind(c, specs, slab);
}

}  // namespace stretch
