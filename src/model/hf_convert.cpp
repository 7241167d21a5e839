// Hugging Face checkpoints <-> our models (see hf_convert.hpp). Each family is one table of tensor links
// (hf_links): the same table drives import and export.
#include "model/hf_convert.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>

#include "core/error.hpp"
#include "core/json_int.hpp"
#include "core/fs.hpp"
#include "core/shape.hpp"
#include "io/hf_weights.hpp"
#include "model/hf_layout.hpp"
#include "position/rope_scaling_hf.hpp"
#include "position/sinusoidal.hpp"

namespace stretch {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct FamilyName {
  HfFamily family;
  std::string_view architecture, model_type;
};
constexpr FamilyName kFamilies[] = {
    {HfFamily::llama, "LlamaForCausalLM", "llama"},   {HfFamily::mistral, "MistralForCausalLM", "mistral"},
    {HfFamily::qwen2, "Qwen2ForCausalLM", "qwen2"},   {HfFamily::gpt2, "GPT2LMHeadModel", "gpt2"},
    {HfFamily::mpt, "MptForCausalLM", "mpt"},         {HfFamily::bloom, "BloomForCausalLM", "bloom"},
};

std::string family_list() {
  std::string s;
  for (const auto& f : kFamilies) s += (s.empty() ? "" : ", ") + std::string(f.architecture);
  return s;
}

using hf::llama_like;
using hf::Xf;
using hf::hf_row;

// ---------------------------------------------------------------------------------------------- config.json

// Typed access to config.json keys; every error names the file and the key.
class Keys {
 public:
  Keys(const json& j, std::string source) : j_(j), source_(std::move(source)) {}
  const std::string& source() const { return source_; }
  bool has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw InputError(source_ + ": key '" + key + "': " + what);
  }
  long long integer(const char* key, long long lo, long long hi) const {
    if (!has(key)) fail(key, "missing (expected an integer)");
    return checked(key, j_[key], lo, hi);
  }
  long long integer_or(const char* key, long long dflt, long long lo, long long hi) const {
    return has(key) ? checked(key, j_[key], lo, hi) : dflt;
  }
  double number_or(const char* key, double dflt) const {
    if (!has(key)) return dflt;
    if (!j_[key].is_number() || !std::isfinite(j_[key].get<double>())) fail(key, "expected a number, got " + j_[key].dump());
    return j_[key].get<double>();
  }
  bool boolean_or(const char* key, bool dflt) const {
    if (!has(key)) return dflt;
    if (!j_[key].is_boolean()) fail(key, "expected true or false, got " + j_[key].dump());
    return j_[key].get<bool>();
  }
  std::string string_or(const char* key, const std::string& dflt) const {
    if (!has(key)) return dflt;
    if (!j_[key].is_string()) fail(key, "expected a string, got " + j_[key].dump());
    return j_[key].get<std::string>();
  }
  // The key, when present and not null, must equal `want` (what our model computes).
  void require(const char* key, const json& want, const std::string& why) const {
    if (has(key) && j_[key] != want) fail(key, "is " + j_[key].dump() + "; " + why);
  }
  const json& raw() const { return j_; }

 private:
  long long checked(const char* key, const json& v, long long lo, long long hi) const {
    // 64-bit first, then the range: a huge value is reported as itself, never wrapped
    if (!v.is_number_integer()) fail(key, "expected an integer, got " + v.dump());
    const auto read = json_int64(v);
    if (!read) fail(key, "is " + v.dump() + ", too large");
    const long long x = *read;
    if (x < lo || x > hi)
      fail(key, "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + std::to_string(x));
    return x;
  }
  const json& j_;
  std::string source_;
};

constexpr long long kMaxDim = 1 << 20, kMaxLen = 1 << 22, kMaxVocab = 1 << 24;

HfFamily family_of(const Keys& k) {
  const json& j = k.raw();
  std::string arch;
  if (j.contains("architectures") && !j["architectures"].is_null()) {
    if (!j["architectures"].is_array() || j["architectures"].empty() || !j["architectures"][0].is_string())
      k.fail("architectures", "expected a list of class names such as [\"LlamaForCausalLM\"], got " +
                                  j["architectures"].dump());
    if (j["architectures"].size() > 1)
      k.fail("architectures", "lists " + std::to_string(j["architectures"].size()) + " classes; expected one");
    arch = j["architectures"][0].get<std::string>();
    for (const auto& f : kFamilies)
      if (f.architecture == arch) return f.family;
    k.fail("architectures", "unknown architecture \"" + arch + "\" (supported: " + family_list() + ")");
  }
  const std::string mt = k.string_or("model_type", "");
  for (const auto& f : kFamilies)
    if (f.model_type == mt) return f.family;
  k.fail(mt.empty() ? "architectures" : "model_type",
         mt.empty() ? std::string("missing (and no model_type); supported: ") + family_list()
                    : "unknown model_type \"" + mt + "\" (supported: " + family_list() + ")");
}

HfConfig llama_config(const Keys& k, HfFamily family) {
  HfConfig h;
  h.family = family;
  ModelConfig& c = h.model;
  c.arch = Arch::llama;
  c.bias = false;
  c.position = PositionMethod::rope;
  c.vocab_size = static_cast<int>(k.integer("vocab_size", 2, kMaxVocab));
  c.n_embd = static_cast<int>(k.integer("hidden_size", 1, kMaxDim));
  c.n_layer = static_cast<int>(k.integer("num_hidden_layers", 1, 1024));
  c.n_head = static_cast<int>(k.integer("num_attention_heads", 1, 1024));
  const int kv = static_cast<int>(k.integer_or("num_key_value_heads", c.n_head, 1, c.n_head));
  c.n_kv_head = kv == c.n_head ? 0 : kv;
  c.mlp_hidden = static_cast<int>(k.integer("intermediate_size", 1, kMaxDim));
  c.block_size = static_cast<int>(k.integer_or("max_position_embeddings", 2048, 1, kMaxLen));
  c.norm_eps = static_cast<float>(k.number_or("rms_norm_eps", 1e-6));
  c.tie_embeddings = k.boolean_or("tie_word_embeddings", false);
  if (c.n_embd % c.n_head != 0)
    k.fail("num_attention_heads", std::to_string(c.n_head) + " does not divide hidden_size " + std::to_string(c.n_embd));
  const int hd = c.n_embd / c.n_head;
  if (k.has("head_dim") && k.integer("head_dim", 1, kMaxDim) != hd)
    k.fail("head_dim", "is " + k.raw()["head_dim"].dump() + ", but stretch needs hidden_size / num_attention_heads = " +
                           std::to_string(hd));
  if (c.n_head % kv != 0)
    k.fail("num_key_value_heads", std::to_string(kv) + " does not divide num_attention_heads " + std::to_string(c.n_head));
  k.require("hidden_act", "silu", "stretch's llama family computes SwiGLU with SiLU");
  k.require("attention_bias", false, "stretch's llama family has biases on q, k, v only (Qwen2's)");
  k.require("mlp_bias", false, "stretch's llama family has no MLP biases");
  c.qkv_bias = family == HfFamily::qwen2;
  const HfRope rope = rope_from_hf_config(k.raw(), c.block_size, hd, k.source());
  c.rope_base = rope.base;
  c.rope_scaling = rope.scaling;
  if (family == HfFamily::mistral && k.has("sliding_window"))
    c.attn_window = static_cast<int>(k.integer("sliding_window", 1, 1 << 30));
  if (family == HfFamily::qwen2 && k.boolean_or("use_sliding_window", false) && k.has("sliding_window")) {
    const long long first = k.integer_or("max_window_layers", c.n_layer, 0, 1 << 30);
    if (first == 0) {
      c.attn_window = static_cast<int>(k.integer("sliding_window", 1, 1 << 30));
    } else if (first < c.n_layer) {
      k.fail("max_window_layers", "is " + std::to_string(first) + ": layers below it attend fully and the others "
                                  "through a window of sliding_window; stretch uses one window for every layer");
    }
  }
  if (k.has("layer_types") && k.raw()["layer_types"].is_array()) {
    for (const auto& t : k.raw()["layer_types"]) {
      const bool sliding = t == "sliding_attention";
      if (sliding != (c.attn_window > 0) || (!sliding && t != "full_attention"))
        k.fail("layer_types", "mixes or names attention types (" + k.raw()["layer_types"].dump() +
                                  ") that differ from one window for every layer");
    }
  }
  return h;
}

HfConfig gpt2_config(const Keys& k) {
  HfConfig h;
  h.family = HfFamily::gpt2;
  ModelConfig& c = h.model;
  c.arch = Arch::gpt;
  c.bias = true;
  c.position = PositionMethod::learned;
  c.vocab_size = static_cast<int>(k.integer("vocab_size", 2, kMaxVocab));
  c.n_embd = static_cast<int>(k.integer("n_embd", 1, kMaxDim));
  c.n_layer = static_cast<int>(k.integer("n_layer", 1, 1024));
  c.n_head = static_cast<int>(k.integer("n_head", 1, 1024));
  c.block_size = static_cast<int>(k.integer("n_positions", 1, kMaxLen));
  c.mlp_hidden = static_cast<int>(k.integer_or("n_inner", 4LL * c.n_embd, 1, kMaxDim));
  c.norm_eps = static_cast<float>(k.number_or("layer_norm_epsilon", 1e-5));
  c.tie_embeddings = k.boolean_or("tie_word_embeddings", true);
  const std::string act = k.string_or("activation_function", "gelu_new");
  if (act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast") {
    c.activation = Activation::gelu_tanh;
  } else if (act == "gelu") {
    c.activation = Activation::gelu;
  } else {
    k.fail("activation_function", "is \"" + act + "\" (supported: gelu_new, gelu_pytorch_tanh, gelu_fast, gelu)");
  }
  k.require("scale_attn_weights", true, "stretch scales attention scores by 1/sqrt(head size)");
  k.require("scale_attn_by_inverse_layer_idx", false, "stretch does not scale attention by layer index");
  if (c.n_embd % c.n_head != 0)
    k.fail("n_head", std::to_string(c.n_head) + " does not divide n_embd " + std::to_string(c.n_embd));
  return h;
}

HfConfig mpt_config(const Keys& k) {
  HfConfig h;
  h.family = HfFamily::mpt;
  ModelConfig& c = h.model;
  c.arch = Arch::gpt;
  c.bias = false;
  c.activation = Activation::gelu;
  c.position = PositionMethod::alibi;
  c.vocab_size = static_cast<int>(k.integer("vocab_size", 2, kMaxVocab));
  c.n_embd = static_cast<int>(k.integer("d_model", 1, kMaxDim));
  c.n_layer = static_cast<int>(k.integer("n_layers", 1, 1024));
  c.n_head = static_cast<int>(k.integer("n_heads", 1, 1024));
  c.block_size = static_cast<int>(k.integer_or("max_seq_len", 2048, 1, kMaxLen));
  c.mlp_hidden = 4 * c.n_embd;
  c.norm_eps = static_cast<float>(k.number_or("layer_norm_epsilon", 1e-5));
  c.tie_embeddings = k.boolean_or("tie_word_embeddings", true);
  k.require("expansion_ratio", 4, "transformers' MPT computes a 4 x d_model MLP whatever the ratio");
  k.require("no_bias", true, "transformers' MPT has no biases");
  k.require("logit_scale", json(), "stretch does not scale the logits");
  if (c.n_embd % c.n_head != 0)
    k.fail("n_heads", std::to_string(c.n_head) + " does not divide d_model " + std::to_string(c.n_embd));
  if (k.has("attn_config")) {
    const json& a = k.raw()["attn_config"];
    if (!a.is_object()) k.fail("attn_config", "expected an object, got " + a.dump());
    Keys ak(a, k.source() + ": attn_config");
    ak.require("alibi", true, "transformers' MPT always adds ALiBi biases; learned MPT positions are not supported");
    ak.require("clip_qkv", json(), "stretch does not clip q, k, v");
    ak.require("qk_ln", false, "stretch has no q/k LayerNorms");
    ak.require("attn_uses_sequence_id", false, "stretch attends across the whole sequence");
    ak.require("prefix_lm", false, "stretch is a causal model");
    if (ak.has("attn_type")) ak.require("attn_type", "multihead_attention", "stretch's MPT is multi-head attention");
    if (ak.has("softmax_scale")) {
      const double s = ak.number_or("softmax_scale", 0.0);
      const double want = 1.0 / std::sqrt(static_cast<double>(c.n_embd / c.n_head));
      if (std::fabs(s - want) > 1e-6 * want)
        ak.fail("softmax_scale", "is " + a["softmax_scale"].dump() + "; stretch uses 1/sqrt(head size) = " +
                                     std::to_string(want));
    }
    c.alibi_max_bias = ak.number_or("alibi_bias_max", 8.0);
    if (!(c.alibi_max_bias > 0.0)) ak.fail("alibi_bias_max", "expected a positive number");
    if (c.alibi_max_bias != 8.0)
      h.notes.push_back("attn_config.alibi_bias_max is " + a["alibi_bias_max"].dump() +
                        ": stretch uses it, as MosaicML's MPT does; transformers' MptModel ignores it (always 8)");
  }
  return h;
}

HfConfig bloom_config(const Keys& k) {
  HfConfig h;
  h.family = HfFamily::bloom;
  ModelConfig& c = h.model;
  c.arch = Arch::gpt;
  c.bias = true;
  c.activation = Activation::gelu_tanh;
  c.embed_norm = true;
  c.position = PositionMethod::alibi;
  c.vocab_size = static_cast<int>(k.integer("vocab_size", 2, kMaxVocab));
  c.n_embd = static_cast<int>(k.has("n_embed") ? k.integer("n_embed", 1, kMaxDim) : k.integer("hidden_size", 1, kMaxDim));
  c.n_layer = static_cast<int>(k.has("n_layer") ? k.integer("n_layer", 1, 1024) : k.integer("num_hidden_layers", 1, 1024));
  c.n_head = static_cast<int>(k.has("n_head") ? k.integer("n_head", 1, 1024) : k.integer("num_attention_heads", 1, 1024));
  c.mlp_hidden = 4 * c.n_embd;
  c.norm_eps = static_cast<float>(k.number_or("layer_norm_epsilon", 1e-5));
  c.tie_embeddings = k.boolean_or("tie_word_embeddings", true);
  if (k.has("seq_length")) {
    c.block_size = static_cast<int>(k.integer("seq_length", 1, kMaxLen));
  } else {
    c.block_size = 2048;
    h.notes.push_back("config.json has no seq_length (BLOOM stores no trained length): block_size set to 2048, "
                      "BLOOM's; it only sets evaluation defaults such as `up_to`");
  }
  k.require("apply_residual_connection_post_layernorm", false, "stretch's residual stream is pre-norm");
  if (c.n_embd % c.n_head != 0)
    k.fail("n_head", std::to_string(c.n_head) + " does not divide the hidden size " + std::to_string(c.n_embd));
  return h;
}

// ---------------------------------------------------------------------------------------------- tensors

// F = float for an import (the links are written), const float for an export (only read).
template <class F>
struct BasicLink {
  std::string hf;                        // tensor name in the checkpoint
  std::vector<std::int64_t> hf_shape;    // its shape there
  F* tensor;                             // our tensor (null in a names-only table)
  std::int64_t at = 0;                   // where in it (elements: a block of rows)
  Xf xf = Xf::copy;
  int heads = 0, hd = 0;                 // rope_rows, bloom_qkv
  F* ours() const { return tensor + at; }
};
using Link = BasicLink<float>;
using ConstLink = BasicLink<const float>;

std::int64_t numel(const std::vector<std::int64_t>& s) {
  std::int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

// Moves one link's values from `src` to `dst`: from the HF layout to ours when to_ours, else from ours to HF's.
template <class F>
void convert(const BasicLink<F>& l, const float* src, float* dst, bool to_ours) {
  const std::int64_t n = numel(l.hf_shape);
  const std::int64_t cols = l.hf_shape.size() == 2 ? l.hf_shape[1] : 1;
  const std::int64_t rows = n / cols;
  switch (l.xf) {
    case Xf::copy:
      std::copy(src, src + n, dst);
      return;
    case Xf::transpose:  // hf (rows = in, cols = out), ours (out, in)
      for (std::int64_t r = 0; r < rows; r++)
        for (std::int64_t c = 0; c < cols; c++) {
          if (to_ours) dst[c * rows + r] = src[r * cols + c];
          else dst[r * cols + c] = src[c * rows + r];
        }
      return;
    case Xf::rope_rows:
    case Xf::bloom_qkv:
      for (std::int64_t o = 0; o < rows; o++) {
        const std::int64_t h = hf_row(l.xf, l.heads, l.hd, o);
        const float* from = src + (to_ours ? h : o) * cols;
        std::copy(from, from + cols, dst + (to_ours ? o : h) * cols);
      }
      return;
  }
}

void to_ours(const Link& l, const float* src) { convert(l, src, l.ours(), true); }

std::vector<float> to_hf(const ConstLink& l) {
  std::vector<float> out(static_cast<std::size_t>(numel(l.hf_shape)));
  convert(l, l.ours(), out.data(), false);
  return out;
}

// The links of family f for config c over slab view v, with the checkpoint's name prefix (GPT-2 and BLOOM files
// exist with and without "transformer."). Tied models have no lm_head link.
template <class T>
std::vector<BasicLink<T>> hf_links(HfFamily f, const ModelConfig& c, const BasicParamView<T>& v,
                                   const std::string& prefix) {
  const std::int64_t V = c.vocab_size, C = c.n_embd, F = c.mlp_hidden, hd = c.head_dim(), NH = c.n_head;
  const std::int64_t NKV = c.kv_heads(), KVD = c.kv_dim();
  const int h = static_cast<int>(hd);
  std::vector<BasicLink<T>> L;
  auto add = [&](std::string name, std::vector<std::int64_t> shape, T* tensor, std::int64_t at = 0,
                 Xf xf = Xf::copy, int heads = 0) {
    L.push_back({std::move(name), std::move(shape), tensor, at, xf, heads, h});
  };
  if (llama_like(f)) {
    add("model.embed_tokens.weight", {V, C}, v.wte);
    for (int l = 0; l < c.n_layer; l++) {
      const auto& w = v.layers[l];
      const std::string p = "model.layers." + std::to_string(l) + ".";
      add(p + "input_layernorm.weight", {C}, w.ln1_w);
      add(p + "self_attn.q_proj.weight", {C, C}, w.qkv_w, 0, Xf::rope_rows, static_cast<int>(NH));
      add(p + "self_attn.k_proj.weight", {KVD, C}, w.qkv_w, C * C, Xf::rope_rows, static_cast<int>(NKV));
      add(p + "self_attn.v_proj.weight", {KVD, C}, w.qkv_w, (C + KVD) * C);
      if (c.qkv_bias) {
        add(p + "self_attn.q_proj.bias", {C}, w.qkv_b, 0, Xf::rope_rows, static_cast<int>(NH));
        add(p + "self_attn.k_proj.bias", {KVD}, w.qkv_b, C, Xf::rope_rows, static_cast<int>(NKV));
        add(p + "self_attn.v_proj.bias", {KVD}, w.qkv_b, C + KVD);
      }
      add(p + "self_attn.o_proj.weight", {C, C}, w.attproj_w);
      add(p + "post_attention_layernorm.weight", {C}, w.ln2_w);
      add(p + "mlp.gate_proj.weight", {F, C}, w.fc_w);
      add(p + "mlp.up_proj.weight", {F, C}, w.fc_w, F * C);
      add(p + "mlp.down_proj.weight", {C, F}, w.fcproj_w);
    }
    add("model.norm.weight", {C}, v.lnf_w);
    if (!c.tie_embeddings) add("lm_head.weight", {V, C}, v.lm_head);
    return L;
  }
  if (f == HfFamily::gpt2) {
    add(prefix + "wte.weight", {V, C}, v.wte);
    add(prefix + "wpe.weight", {c.block_size, C}, v.wpe);
    for (int l = 0; l < c.n_layer; l++) {
      const auto& w = v.layers[l];
      const std::string p = prefix + "h." + std::to_string(l) + ".";
      add(p + "ln_1.weight", {C}, w.ln1_w);
      add(p + "ln_1.bias", {C}, w.ln1_b);
      add(p + "attn.c_attn.weight", {C, 3 * C}, w.qkv_w, 0, Xf::transpose);
      add(p + "attn.c_attn.bias", {3 * C}, w.qkv_b);
      add(p + "attn.c_proj.weight", {C, C}, w.attproj_w, 0, Xf::transpose);
      add(p + "attn.c_proj.bias", {C}, w.attproj_b);
      add(p + "ln_2.weight", {C}, w.ln2_w);
      add(p + "ln_2.bias", {C}, w.ln2_b);
      add(p + "mlp.c_fc.weight", {C, F}, w.fc_w, 0, Xf::transpose);
      add(p + "mlp.c_fc.bias", {F}, w.fc_b);
      add(p + "mlp.c_proj.weight", {F, C}, w.fcproj_w, 0, Xf::transpose);
      add(p + "mlp.c_proj.bias", {C}, w.fcproj_b);
    }
    add(prefix + "ln_f.weight", {C}, v.lnf_w);
    add(prefix + "ln_f.bias", {C}, v.lnf_b);
    if (!c.tie_embeddings) add("lm_head.weight", {V, C}, v.lm_head);
    return L;
  }
  if (f == HfFamily::mpt) {
    add("transformer.wte.weight", {V, C}, v.wte);
    for (int l = 0; l < c.n_layer; l++) {
      const auto& w = v.layers[l];
      const std::string p = "transformer.blocks." + std::to_string(l) + ".";
      add(p + "norm_1.weight", {C}, w.ln1_w);
      add(p + "attn.Wqkv.weight", {3 * C, C}, w.qkv_w);
      add(p + "attn.out_proj.weight", {C, C}, w.attproj_w);
      add(p + "norm_2.weight", {C}, w.ln2_w);
      add(p + "ffn.up_proj.weight", {F, C}, w.fc_w);
      add(p + "ffn.down_proj.weight", {C, F}, w.fcproj_w);
    }
    add("transformer.norm_f.weight", {C}, v.lnf_w);
    if (!c.tie_embeddings) add("lm_head.weight", {V, C}, v.lm_head);
    return L;
  }
  // bloom
  add(prefix + "word_embeddings.weight", {V, C}, v.wte);
  add(prefix + "word_embeddings_layernorm.weight", {C}, v.ln_emb_w);
  add(prefix + "word_embeddings_layernorm.bias", {C}, v.ln_emb_b);
  for (int l = 0; l < c.n_layer; l++) {
    const auto& w = v.layers[l];
    const std::string p = prefix + "h." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {C}, w.ln1_w);
    add(p + "input_layernorm.bias", {C}, w.ln1_b);
    add(p + "self_attention.query_key_value.weight", {3 * C, C}, w.qkv_w, 0, Xf::bloom_qkv, static_cast<int>(NH));
    add(p + "self_attention.query_key_value.bias", {3 * C}, w.qkv_b, 0, Xf::bloom_qkv, static_cast<int>(NH));
    add(p + "self_attention.dense.weight", {C, C}, w.attproj_w);
    add(p + "self_attention.dense.bias", {C}, w.attproj_b);
    add(p + "post_attention_layernorm.weight", {C}, w.ln2_w);
    add(p + "post_attention_layernorm.bias", {C}, w.ln2_b);
    add(p + "mlp.dense_h_to_4h.weight", {F, C}, w.fc_w);
    add(p + "mlp.dense_h_to_4h.bias", {F}, w.fc_b);
    add(p + "mlp.dense_4h_to_h.weight", {C, F}, w.fcproj_w);
    add(p + "mlp.dense_4h_to_h.bias", {C}, w.fcproj_b);
  }
  add(prefix + "ln_f.weight", {C}, v.lnf_w);
  add(prefix + "ln_f.bias", {C}, v.lnf_b);
  if (!c.tie_embeddings) add("lm_head.weight", {V, C}, v.lm_head);
  return L;
}

// Checkpoint tensors that carry no weights (buffers some transformers versions saved) and may be skipped.
bool ignorable(const std::string& name) {
  auto ends = [&](const std::string& s) { return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0; };
  return ends("rotary_emb.inv_freq") || ends("attn.bias") || ends("attn.masked_bias");
}

}  // namespace

std::string_view hf_architecture(HfFamily f) {
  for (const auto& x : kFamilies)
    if (x.family == f) return x.architecture;
  return "?";
}

std::string_view hf_model_type(HfFamily f) {
  for (const auto& x : kFamilies)
    if (x.family == f) return x.model_type;
  return "?";
}

HfConfig hf_model_config(const json& config, const std::string& source) {
  if (!config.is_object()) throw InputError(source + ": expected a JSON object");
  const Keys k(config, source);
  const HfFamily f = family_of(k);
  HfConfig h;
  switch (f) {
    case HfFamily::gpt2: h = gpt2_config(k); break;
    case HfFamily::mpt: h = mpt_config(k); break;
    case HfFamily::bloom: h = bloom_config(k); break;
    default: h = llama_config(k, f);
  }
  try {
    h.model.validate([&](const std::string& field) { return source + " (as stretch's " + field + ")"; });
  } catch (const ConfigError& e) {
    throw InputError(e.what());
  }
  return h;
}

HfImport model_from_hf(const fs::path& dir) {
  const fs::path cfg_path = dir / "config.json";
  json cfg;
  try {
    cfg = json::parse(read_file(cfg_path));
  } catch (const json::exception& e) {
    throw InputError(cfg_path.string() + ": not valid JSON: " + e.what());
  }
  HfConfig h = hf_model_config(cfg, cfg_path.string());
  const HfWeights w = HfWeights::open(dir);
  // GPT-2 and BLOOM checkpoints exist with and without the "transformer." prefix
  std::string prefix;
  if (h.family == HfFamily::gpt2 && w.has("transformer.wte.weight")) prefix = "transformer.";
  if (h.family == HfFamily::bloom && w.has("transformer.word_embeddings.weight")) prefix = "transformer.";
  // names and shapes before the model is allocated (a config claiming a far larger model fails here)
  ParamView none;  // names and shapes only
  none.layers.resize(static_cast<std::size_t>(h.model.n_layer));
  std::set<std::string> used;
  for (const Link& l : hf_links(h.family, h.model, none, prefix)) {
    if (!w.has(l.hf))
      throw InputError(dir.string() + ": the weights lack tensor '" + l.hf + "', which " +
                       std::string(hf_architecture(h.family)) + " with this config.json needs");
    const TensorEntry& e = w.entry(l.hf);
    if (e.shape != l.hf_shape)
      throw InputError(w.file_of(l.hf) + ": tensor '" + l.hf + "' has shape " + shape_str(e.shape) +
                       ", but config.json implies " + shape_str(l.hf_shape));
    used.insert(l.hf);
  }
  for (const auto& name : w.names()) {
    if (used.count(name) || ignorable(name)) continue;
    if (h.model.tie_embeddings && name == "lm_head.weight") {
      h.notes.push_back("lm_head.weight is in the file but tie_word_embeddings is true: the embedding is used, as "
                        "transformers does");
      continue;
    }
    throw InputError(w.file_of(name) + ": tensor '" + name + "' is not part of " +
                     std::string(hf_architecture(h.family)) + " as stretch computes it (a feature the config does "
                     "not declare?)");
  }
  HfImport out;
  out.model = std::make_unique<Transformer>(h.model);
  out.model->params().zero();
  const ParamView v = bind_param_view(out.model->config(), out.model->specs(), out.model->params().data());
  std::vector<float> tmp;
  for (const Link& l : hf_links(h.family, out.model->config(), v, prefix)) {
    if (l.xf == Xf::copy) {
      w.read_into(l.hf, l.hf_shape, l.ours());
      continue;
    }
    tmp.resize(static_cast<std::size_t>(numel(l.hf_shape)));
    w.read_into(l.hf, l.hf_shape, tmp.data());
    to_ours(l, tmp.data());
  }
  out.family = h.family;
  out.notes = std::move(h.notes);
  out.config = std::move(cfg);
  return out;
}

// ---------------------------------------------------------------------------------------------- export

namespace {

// What stops `c` from being exported as family f ("" when nothing does).
std::string export_obstacle(const ModelConfig& c, HfFamily f) {
  std::vector<std::string> why;
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) why.push_back(what);
  };
  need(c.logn == LognMode::off, "log-n attention scaling (logn " + std::string(to_string(c.logn)) + ")");
  need(c.position_ids.kind == PositionIdsKind::plain, "a position-id scheme (" + c.position_ids.to_string() + ")");
  need(c.extension.is_none(), "a fine-tuning-free extension (" + c.extension.to_string() + ")");
  need(c.alibi_interp == 0, "ALiBi interpolation to " + std::to_string(c.alibi_interp));
  if (llama_like(f)) {
    need(c.arch == Arch::llama, "the gpt architecture (" + std::string(hf_architecture(f)) + " is llama-style)");
    need(c.position == PositionMethod::rope, "position " + std::string(to_string(c.position)) + " (needs rope)");
    need(f != HfFamily::llama || (!c.qkv_bias && c.attn_window == 0),
         c.qkv_bias ? "q/k/v biases (Qwen2ForCausalLM has them)" : "an attention window (MistralForCausalLM has one)");
    need(f != HfFamily::mistral || !c.qkv_bias, "q/k/v biases (Qwen2ForCausalLM has them)");
    need(f != HfFamily::mistral || c.attn_window > 0, "no attention window (use LlamaForCausalLM)");
    need(c.rope_scaling.type != RopeScalingType::yarn_paper, "yarn-paper scaling (transformers has HF's yarn only)");
  } else {
    need(c.arch == Arch::gpt, "the llama architecture");
    need(c.attn_window == 0, "an attention window of " + std::to_string(c.attn_window));
    need(c.kv_heads() == c.n_head, "grouped-query attention");
    if (f == HfFamily::gpt2) {
      need(c.position == PositionMethod::learned || c.position == PositionMethod::sinusoidal,
           "position " + std::string(to_string(c.position)) + " (GPT2LMHeadModel has learned positions)");
      need(c.bias, "no biases (GPT2LMHeadModel has them)");
      need(!c.embed_norm, "the embedding LayerNorm");
    } else if (f == HfFamily::mpt) {
      need(c.position == PositionMethod::alibi, "position " + std::string(to_string(c.position)) + " (MPT uses alibi)");
      need(!c.bias, "biases (MptForCausalLM has none: train with `bias`)");
      need(c.activation == Activation::gelu, "the tanh GELU (MPT's is exact: train with `activation` gelu)");
      need(c.mlp_hidden == 4 * c.n_embd, "MLP width " + std::to_string(c.mlp_hidden) + " (MPT's is 4 x width)");
      need(!c.embed_norm, "the embedding LayerNorm (BloomForCausalLM has one)");
      need(c.alibi_max_bias == 8.0, "alibi_max_bias " + std::to_string(c.alibi_max_bias) +
                                        " (transformers' MPT always uses 8)");
    } else {  // bloom
      need(c.position == PositionMethod::alibi, "position " + std::string(to_string(c.position)) + " (BLOOM uses alibi)");
      need(c.bias, "no biases (BloomForCausalLM has them)");
      need(c.activation == Activation::gelu_tanh, "the exact GELU (BLOOM's is the tanh form)");
      need(c.mlp_hidden == 4 * c.n_embd, "MLP width " + std::to_string(c.mlp_hidden) + " (BLOOM's is 4 x width)");
      need(c.embed_norm, "no embedding LayerNorm (BLOOM has one: train with `embed_norm`)");
      need(c.alibi_max_bias == 8.0, "alibi_max_bias " + std::to_string(c.alibi_max_bias) + " (BLOOM's is 8)");
    }
  }
  return why.empty() ? "" : why.front() + (why.size() > 1 ? "; " + why[1] : "") +
                                (why.size() > 2 ? " (and " + std::to_string(why.size() - 2) + " more)" : "");
}

}  // namespace

HfFamily hf_export_family(const ModelConfig& c, const std::string& as) {
  if (as != "auto") {
    for (const auto& f : kFamilies)
      if (f.model_type == as) {
        const std::string why = export_obstacle(c, f.family);
        if (!why.empty())
          throw ConfigError("Hugging Face export as " + std::string(f.architecture) + ": this model has " + why);
        return f.family;
      }
    throw UsageError("`as`: expected auto, llama, mistral, qwen2, gpt2, mpt or bloom, got '" + as + "'");
  }
  if (c.position == PositionMethod::t5 || c.position == PositionMethod::none)
    throw ConfigError("Hugging Face export: no transformers class computes " + std::string(to_string(c.position)) +
                      " positions (LlamaForCausalLM: rope; MptForCausalLM, BloomForCausalLM: alibi; GPT2LMHeadModel: "
                      "learned); nothing written");
  std::vector<HfFamily> candidates;
  if (c.arch == Arch::llama) {
    candidates = {c.qkv_bias ? HfFamily::qwen2 : c.attn_window > 0 ? HfFamily::mistral : HfFamily::llama};
  } else if (c.position == PositionMethod::alibi) {
    candidates = {HfFamily::mpt, HfFamily::bloom};
  } else {
    candidates = {HfFamily::gpt2};
  }
  std::string reasons;
  for (HfFamily f : candidates) {
    const std::string why = export_obstacle(c, f);
    if (why.empty()) return f;
    reasons += (reasons.empty() ? "" : "; ") + std::string(hf_architecture(f)) + ": this model has " + why;
  }
  throw ConfigError("Hugging Face export: no transformers class computes this model exactly (" + reasons +
                    "); nothing written");
}

json hf_config_json(const ModelConfig& c, HfFamily f, const HfExportOptions& o) {
  const bool fold = c.embed_scale != 1.0f;  // the scale goes into the embedding; the classifier is written apart
  const bool tied = c.tie_embeddings && !fold;
  json j = json::object();
  j["architectures"] = {std::string(hf_architecture(f))};
  j["model_type"] = std::string(hf_model_type(f));
  j["vocab_size"] = c.vocab_size;
  j["tie_word_embeddings"] = tied;
  j["torch_dtype"] = o.dtype == DType::BF16 ? "bfloat16" : o.dtype == DType::F16 ? "float16" : "float32";
  // null when the tokenizer has none (GPT2Config would otherwise default both to 50256)
  j["bos_token_id"] = o.bos_token_id >= 0 ? json(o.bos_token_id) : json();
  j["eos_token_id"] = o.eos_token_id >= 0 ? json(o.eos_token_id) : json();
  if (llama_like(f)) {
    j["hidden_size"] = c.n_embd;
    j["intermediate_size"] = c.mlp_hidden;
    j["num_hidden_layers"] = c.n_layer;
    j["num_attention_heads"] = c.n_head;
    j["num_key_value_heads"] = c.kv_heads();
    j["head_dim"] = c.head_dim();
    j["hidden_act"] = "silu";
    j["max_position_embeddings"] = c.block_size;
    j["rms_norm_eps"] = c.norm_eps;
    j["attention_dropout"] = 0.0;
    if (f == HfFamily::llama) {
      j["attention_bias"] = false;
      j["mlp_bias"] = false;
    }
    if (f == HfFamily::mistral) j["sliding_window"] = c.attn_window;
    if (f == HfFamily::qwen2) {
      j["use_sliding_window"] = c.attn_window > 0;
      j["sliding_window"] = c.attn_window > 0 ? json(c.attn_window) : json();
      j["max_window_layers"] = c.attn_window > 0 ? 0 : c.n_layer;
    }
    rope_to_hf_config(c.rope_base, c.rope_scaling, c.block_size, c.head_dim(), j);
  } else if (f == HfFamily::gpt2) {
    j["n_embd"] = c.n_embd;
    j["n_layer"] = c.n_layer;
    j["n_head"] = c.n_head;
    j["n_positions"] = c.block_size;
    j["n_inner"] = c.mlp_hidden;
    j["layer_norm_epsilon"] = c.norm_eps;
    j["activation_function"] = c.activation == Activation::gelu ? "gelu" : "gelu_new";
    j["resid_pdrop"] = 0.0;
    j["embd_pdrop"] = 0.0;
    j["attn_pdrop"] = 0.0;
    j["scale_attn_weights"] = true;
  } else if (f == HfFamily::mpt) {
    j["d_model"] = c.n_embd;
    j["n_layers"] = c.n_layer;
    j["n_heads"] = c.n_head;
    j["expansion_ratio"] = 4;
    j["max_seq_len"] = c.block_size;
    j["layer_norm_epsilon"] = c.norm_eps;
    j["no_bias"] = true;
    j["attn_config"] = {{"alibi", true},        {"alibi_bias_max", 8},  {"attn_type", "multihead_attention"},
                        {"clip_qkv", nullptr},  {"qk_ln", false},       {"softmax_scale", nullptr},
                        {"attn_pdrop", 0},      {"prefix_lm", false},   {"attn_uses_sequence_id", false}};
  } else {
    j["hidden_size"] = c.n_embd;
    j["n_layer"] = c.n_layer;
    j["n_head"] = c.n_head;
    j["seq_length"] = c.block_size;
    j["layer_norm_epsilon"] = c.norm_eps;
    j["apply_residual_connection_post_layernorm"] = false;
    j["hidden_dropout"] = 0.0;
    j["attention_dropout"] = 0.0;
    j["pretraining_tp"] = 1;
    j["slow_but_exact"] = false;
  }
  return j;
}

HfFamily model_to_hf(const Transformer& m, const fs::path& dir, const HfExportOptions& o) {
  const ModelConfig& c = m.config();
  const HfFamily f = hf_export_family(c, o.as);
  const json cfg = hf_config_json(c, f, o);  // ConfigError (a rope scaling transformers lacks) before any write
  // The links read through a view of the model's own slab; what export changes gets a buffer of its own: the
  // embedding scaled by embed_scale (the classifier then reads the unscaled one: untied), and a sinusoidal table
  // as GPT-2's learned rows 0 .. block_size-1.
  ModelConfig out = c;
  ConstParamView v = bind_param_view(c, m.specs(), m.params().data());
  std::vector<float> scaled_wte, table;
  if (c.embed_scale != 1.0f) {
    scaled_wte.assign(v.wte, v.wte + static_cast<std::size_t>(c.vocab_size) * c.n_embd);
    for (float& x : scaled_wte) x *= c.embed_scale;
    v.lm_head = v.lm_head ? v.lm_head : v.wte;
    v.wte = scaled_wte.data();
    out.tie_embeddings = false;
  }
  if (c.position == PositionMethod::sinusoidal) {
    table.assign(static_cast<std::size_t>(c.block_size) * c.n_embd, 0.0f);
    std::vector<std::int32_t> pos(static_cast<std::size_t>(c.block_size));
    for (int p = 0; p < c.block_size; p++) pos[p] = p;
    sinusoidal_add_forward(table.data(), pos.data(), c.block_size, c.n_embd);
    v.wpe = table.data();
    out.position = PositionMethod::learned;
  }
  std::vector<HfTensorOut> tensors;
  for (const ConstLink& l : hf_links(f, out, v, "transformer.")) tensors.push_back({l.hf, l.hf_shape, to_hf(l)});
  write_file_atomic(dir / "config.json", cfg.dump(2) + "\n");
  write_hf_weights(dir, tensors, o.dtype, o.max_shard_bytes);
  return f;
}

}  // namespace stretch
