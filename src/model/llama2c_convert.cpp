#include "model/llama2c_convert.hpp"

#include <algorithm>
#include <string>

#include "core/error.hpp"

namespace stretch {

ModelConfig llama2c_model_config(const Llama2cConfig& c) {
  ModelConfig m;
  m.arch = Arch::llama;
  m.vocab_size = c.vocab_size;
  m.n_layer = c.n_layers;
  m.n_head = c.n_heads;
  m.n_kv_head = c.n_kv_heads == c.n_heads ? 0 : c.n_kv_heads;
  m.n_embd = c.dim;
  m.mlp_hidden = c.hidden_dim;
  m.block_size = c.seq_len;
  m.position = PositionMethod::rope;
  m.bias = false;
  m.tie_embeddings = c.shared_classifier;
  m.rope_base = 10000.0;
  m.norm_eps = 1e-5f;
  m.validate([](const std::string& f) { return "llama2.c header: " + f; });
  return m;
}

namespace {
// Copies `layers` consecutive blocks of `per` floats from src (layer-major) into layer l's tensor at row offset.
void put(float* dst, const std::vector<float>& src, std::size_t per, int l) {
  std::copy(src.begin() + static_cast<long>(per * l), src.begin() + static_cast<long>(per * (l + 1)), dst);
}
void get(std::vector<float>& dst, const float* src, std::size_t per, int l) {
  std::copy(src, src + per, dst.begin() + static_cast<long>(per * l));
}
}  // namespace

std::unique_ptr<Transformer> model_from_llama2c(const Llama2cWeights& w) {
  const Llama2cConfig& c = w.config;
  auto model = std::make_unique<Transformer>(llama2c_model_config(c));
  model->params().zero();
  ParamView v = bind_param_view(model->config(), model->specs(), model->params().data());
  const std::size_t C = c.dim, KVD = c.kv_dim(), F = c.hidden_dim;
  std::copy(w.tok_embeddings.begin(), w.tok_embeddings.end(), v.wte);
  for (int l = 0; l < c.n_layers; l++) {
    const LayerView& L = v.layers[l];
    put(L.ln1_w, w.rms_att, C, l);
    put(L.qkv_w, w.wq, C * C, l);
    put(L.qkv_w + C * C, w.wk, KVD * C, l);
    put(L.qkv_w + C * C + KVD * C, w.wv, KVD * C, l);
    put(L.attproj_w, w.wo, C * C, l);
    put(L.ln2_w, w.rms_ffn, C, l);
    put(L.fc_w, w.w1, F * C, l);
    put(L.fc_w + F * C, w.w3, F * C, l);
    put(L.fcproj_w, w.w2, C * F, l);
  }
  std::copy(w.rms_final.begin(), w.rms_final.end(), v.lnf_w);
  if (!c.shared_classifier) std::copy(w.wcls.begin(), w.wcls.end(), v.lm_head);
  return model;
}

Llama2cWeights model_to_llama2c(const Transformer& m) {
  const ModelConfig& mc = m.config();
  if (mc.arch != Arch::llama || mc.position != PositionMethod::rope || mc.rope_base != 10000.0 ||
      !mc.rope_scaling.is_none() || mc.attn_window != 0 || mc.logn != LognMode::off)
    throw ConfigError("llama2.c export: the format holds llama-architecture rope models with base 10000 and no "
                      "scaling, window or log-n attention (this model: " + mc.to_json().dump() + ")");
  Llama2cWeights w;
  Llama2cConfig& c = w.config;
  c.dim = mc.n_embd;
  c.hidden_dim = mc.mlp_hidden;
  c.n_layers = mc.n_layer;
  c.n_heads = mc.n_head;
  c.n_kv_heads = mc.kv_heads();
  c.vocab_size = mc.vocab_size;
  c.seq_len = mc.block_size;
  c.shared_classifier = mc.tie_embeddings;
  const std::size_t C = c.dim, KVD = c.kv_dim(), F = c.hidden_dim, NL = c.n_layers, V = c.vocab_size;
  const ConstParamView v = bind_param_view(mc, m.specs(), m.params().data());
  w.tok_embeddings.assign(v.wte, v.wte + V * C);
  w.rms_att.resize(NL * C);
  w.wq.resize(NL * C * C);
  w.wk.resize(NL * KVD * C);
  w.wv.resize(NL * KVD * C);
  w.wo.resize(NL * C * C);
  w.rms_ffn.resize(NL * C);
  w.w1.resize(NL * F * C);
  w.w2.resize(NL * C * F);
  w.w3.resize(NL * F * C);
  for (int l = 0; l < c.n_layers; l++) {
    const ConstLayerView& L = v.layers[l];
    get(w.rms_att, L.ln1_w, C, l);
    get(w.wq, L.qkv_w, C * C, l);
    get(w.wk, L.qkv_w + C * C, KVD * C, l);
    get(w.wv, L.qkv_w + C * C + KVD * C, KVD * C, l);
    get(w.wo, L.attproj_w, C * C, l);
    get(w.rms_ffn, L.ln2_w, C, l);
    get(w.w1, L.fc_w, F * C, l);
    get(w.w3, L.fc_w + F * C, F * C, l);
    get(w.w2, L.fcproj_w, C * F, l);
  }
  w.rms_final.assign(v.lnf_w, v.lnf_w + C);
  if (!c.shared_classifier) w.wcls.assign(v.lm_head, v.lm_head + V * C);
  return w;
}

}  // namespace stretch
