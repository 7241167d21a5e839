#include "model/gguf_convert.hpp"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

#include "core/error.hpp"
#include "io/tokenizer_llama2c.hpp"
#include "position/rope_scaling.hpp"
#include "position/sinusoidal.hpp"

namespace stretch {

namespace {

const std::string kArch = "llama";
// Our own keys: the llama3 parameters beside llama.cpp's rope_freqs table, so an import gets llama3 back exactly.
const std::string kStretchScaling = "stretch.rope.scaling.";
std::string key(const char* suffix) { return kArch + "." + suffix; }
std::string mpt(const char* suffix) { return std::string("mpt.") + suffix; }
std::string blk(int l, const char* suffix, const char* what = "weight") {
  return "blk." + std::to_string(l) + "." + suffix + "." + what;
}

// SentencePiece's word-boundary mark U+2581 in UTF-8.
const std::string kSpm = "\xE2\x96\x81";

std::string to_spm(const std::string& piece) {
  std::string out;
  for (char ch : piece) {
    if (ch == ' ') out += kSpm;
    else out.push_back(ch);
  }
  return out;
}

bool is_byte_piece(const std::string& p) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); };
  return p.size() == 6 && p.compare(0, 3, "<0x") == 0 && hex(p[3]) && hex(p[4]) && p[5] == '>';
}

// Token types of llama.cpp's llama_token_type.
constexpr int kTokNormal = 1, kTokUnknown = 2, kTokControl = 3, kTokByte = 6;

void write_bpe_tokenizer(GgufWriter& w, const BpeVocab& v, int vocab_size) {
  if (static_cast<int>(v.tokens.size()) != vocab_size)
    throw ConfigError("GGUF export: the tokenizer has " + std::to_string(v.tokens.size()) +
                      " tokens but the model's vocab_size is " + std::to_string(vocab_size));
  const bool bytes = v.merges.empty();  // the byte tokenizer: no special tokens
  std::vector<GgufValue> types;
  for (std::size_t i = 0; i < v.tokens.size(); i++)
    types.push_back(GgufValue::i32(!bytes && i + 1 == v.tokens.size() ? kTokControl : kTokNormal));
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", "gpt-2");
  w.set_string_array("tokenizer.ggml.tokens", v.tokens);
  w.set_string_array("tokenizer.ggml.merges", v.merges);
  w.set("tokenizer.ggml.token_type", GgufValue::array(GgufValueType::INT32, std::move(types)));
  if (!bytes) {  // GPT-2's <|endoftext|>, its last id
    w.set_u32("tokenizer.ggml.bos_token_id", static_cast<std::uint32_t>(vocab_size - 1));
    w.set_u32("tokenizer.ggml.eos_token_id", static_cast<std::uint32_t>(vocab_size - 1));
  }
  w.set_bool("tokenizer.ggml.add_bos_token", false);
}

void write_tokenizer(GgufWriter& w, const Tokenizer& tok, int vocab_size) {
  if (std::optional<BpeVocab> b = bpe_vocab(tok)) return write_bpe_tokenizer(w, *b, vocab_size);
  const Llama2cVocab* v = llama2c_vocab(tok);
  if (!v)
    throw ConfigError("GGUF export: tokenizer type \"" + tok.type() +
                      "\" is not supported (supported: llama2c as tokenizer.ggml.model \"llama\"; gpt2 and byte as "
                      "\"gpt2\")");
  if (static_cast<int>(v->pieces.size()) != vocab_size)
    throw ConfigError("GGUF export: the tokenizer has " + std::to_string(v->pieces.size()) +
                      " tokens but the model's vocab_size is " + std::to_string(vocab_size));
  std::vector<std::string> pieces;
  std::vector<GgufValue> scores, types;
  pieces.reserve(v->pieces.size());
  for (std::size_t i = 0; i < v->pieces.size(); i++) {
    // llama2.c's tokenizer.py writes BOS / EOS as "\n<s>\n" / "\n</s>\n"; SentencePiece's pieces are "<s>", "</s>".
    std::string piece = v->pieces[i];
    if (i == static_cast<std::size_t>(kLlama2cBos) || i == static_cast<std::size_t>(kLlama2cEos)) {
      while (!piece.empty() && piece.front() == '\n') piece.erase(piece.begin());
      while (!piece.empty() && piece.back() == '\n') piece.pop_back();
    }
    pieces.push_back(to_spm(piece));
    scores.push_back(GgufValue::f32(v->scores[i]));
    int t = kTokNormal;
    if (i == static_cast<std::size_t>(kLlama2cUnk)) t = kTokUnknown;
    else if (i == static_cast<std::size_t>(kLlama2cBos) || i == static_cast<std::size_t>(kLlama2cEos)) t = kTokControl;
    else if (is_byte_piece(v->pieces[i])) t = kTokByte;
    types.push_back(GgufValue::i32(t));
  }
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", pieces);
  w.set("tokenizer.ggml.scores", GgufValue::array(GgufValueType::FLOAT32, std::move(scores)));
  w.set("tokenizer.ggml.token_type", GgufValue::array(GgufValueType::INT32, std::move(types)));
  w.set_u32("tokenizer.ggml.bos_token_id", kLlama2cBos);
  w.set_u32("tokenizer.ggml.eos_token_id", kLlama2cEos);
  w.set_u32("tokenizer.ggml.unknown_token_id", kLlama2cUnk);
}


// llama.cpp's llama_ftype: 0 all F32, 1 mostly F16, 7 mostly Q8_0, 32 mostly BF16 (1-D tensors stay F32).
std::uint32_t file_type(std::uint32_t type) {
  return type == ggml_type::F32 ? 0 : type == ggml_type::F16 ? 1 : type == ggml_type::Q8_0 ? 7 : 32;
}

// Writers of matrices (in `type`, Q8_0 falling back to F16 for rows not a multiple of 32) and vectors (F32).
struct TensorSink {
  GgufWriter& w;
  std::uint32_t type;
  void mat(const std::string& name, std::int64_t rows, std::int64_t cols, const float* data) const {
    std::uint32_t t = type;
    if (t == ggml_type::Q8_0 && cols % kQ8_0BlockValues != 0) t = ggml_type::F16;
    w.add_tensor(name, {rows, cols}, t, data);
  }
  void vec(const std::string& name, std::int64_t n, const float* data) const {
    w.add_tensor(name, {n}, ggml_type::F32, data);
  }
};

GgufWriter llama_to_gguf(const Transformer& m, const Tokenizer& tok, std::uint32_t type) {
  const ModelConfig& mc = m.config();
  const int C = mc.n_embd, KVD = mc.kv_dim(), F = mc.mlp_hidden, V = mc.vocab_size, hd = mc.head_dim();
  GgufWriter w;
  w.set_string("general.architecture", kArch);
  w.set_string("general.name", "stretch-llama");
  w.set_u32("general.file_type", file_type(type));
  w.set_u32(key("vocab_size"), static_cast<std::uint32_t>(V));
  w.set_u32(key("context_length"), static_cast<std::uint32_t>(mc.block_size));
  w.set_u32(key("embedding_length"), static_cast<std::uint32_t>(C));
  w.set_u32(key("block_count"), static_cast<std::uint32_t>(mc.n_layer));
  w.set_u32(key("feed_forward_length"), static_cast<std::uint32_t>(F));
  w.set_u32(key("attention.head_count"), static_cast<std::uint32_t>(mc.n_head));
  w.set_u32(key("attention.head_count_kv"), static_cast<std::uint32_t>(mc.kv_heads()));
  w.set_u32(key("rope.dimension_count"), static_cast<std::uint32_t>(hd));
  double base = mc.rope_base;
  const RopeScaling& s = mc.rope_scaling;
  const int L_train = mc.rope_train_length();
  std::vector<float> freq_factors;  // rope_freqs.weight (llama3, longrope)
  double attn_factor = 1.0;         // llama.rope.scaling.attn_factor
  switch (s.type) {
    case RopeScalingType::none:
      break;
    case RopeScalingType::ntk:
      base = mc.rope_base * std::pow(s.factor, static_cast<double>(hd) / (hd - 2));
      break;
    case RopeScalingType::linear:
    case RopeScalingType::yarn:
      if (s.type == RopeScalingType::yarn && !s.truncate)
        throw ConfigError("GGUF export: rope_scaling " + s.to_string() +
                          ": yarn with truncate=0 is not supported (ggml always floors / ceils the correction range)");
      w.set_string(key("rope.scaling.type"), s.type == RopeScalingType::linear ? "linear" : "yarn");
      w.set_f32(key("rope.scaling.factor"), static_cast<float>(s.factor));
      w.set_u32(key("rope.scaling.original_context_length"), static_cast<std::uint32_t>(L_train));
      if (s.type == RopeScalingType::yarn) {
        w.set_f32(key("rope.scaling.yarn_beta_fast"), static_cast<float>(s.beta_fast));
        w.set_f32(key("rope.scaling.yarn_beta_slow"), static_cast<float>(s.beta_slow));
        // ggml multiplies llama.cpp's attn_factor by its own 1 + 0.1 ln s: write ours over that
        const double ours = rope_tables(s, hd, mc.rope_base, L_train, L_train).attention_factor;
        const double ggml = s.factor <= 1.0 ? 1.0 : 1.0 + 0.1 * std::log(s.factor);
        if (ours != ggml) attn_factor = ours / ggml;
      }
      break;
    case RopeScalingType::llama3: {
      for (double f : rope_freq_divisors(s, hd, mc.rope_base, L_train, L_train))
        freq_factors.push_back(static_cast<float>(f));
      w.set_string(kStretchScaling + "type", "llama3");
      w.set(kStretchScaling + "factor", GgufValue::f64(s.factor));
      w.set(kStretchScaling + "low_freq_factor", GgufValue::f64(s.low_freq_factor));
      w.set(kStretchScaling + "high_freq_factor", GgufValue::f64(s.high_freq_factor));
      w.set_u32(kStretchScaling + "original_context_length", static_cast<std::uint32_t>(L_train));
      break;
    }
    case RopeScalingType::longrope:
      if (s.short_factor != s.long_factor)
        throw ConfigError("GGUF export: rope_scaling longrope with short_factor != long_factor is not supported "
                          "(llama.cpp's llama architecture has one rope_freqs table for every length)");
      for (double f : rope_freq_divisors(s, hd, mc.rope_base, L_train, L_train))
        freq_factors.push_back(static_cast<float>(f));
      attn_factor = rope_tables(s, hd, mc.rope_base, L_train, L_train).attention_factor;
      break;
    case RopeScalingType::dynamic_ntk:
    case RopeScalingType::yarn_paper:
      throw ConfigError("GGUF export: rope_scaling " + s.to_string() +
                        " is not supported (llama.cpp's llama architecture expresses none, linear, yarn, llama3 and "
                        "longrope with one table as rope_freqs, and ntk as a changed freq_base)");
  }
  if (attn_factor != 1.0) w.set_f32(key("rope.scaling.attn_factor"), static_cast<float>(attn_factor));
  w.set_f32(key("rope.freq_base"), static_cast<float>(base));
  w.set_f32(key("attention.layer_norm_rms_epsilon"), mc.norm_eps);
  write_tokenizer(w, tok, V);

  const ConstParamView v = bind_param_view(mc, m.specs(), m.params().data());
  const TensorSink out{w, type};
  auto mat = [&](const std::string& name, std::int64_t rows, std::int64_t cols, const float* data) {
    out.mat(name, rows, cols, data);
  };
  auto vec = [&](const std::string& name, std::int64_t n, const float* data) { out.vec(name, n, data); };
  if (!freq_factors.empty()) vec("rope_freqs.weight", hd / 2, freq_factors.data());
  mat("token_embd.weight", V, C, v.wte);
  for (int l = 0; l < mc.n_layer; l++) {
    const ConstLayerView& L = v.layers[static_cast<std::size_t>(l)];
    const std::size_t c = static_cast<std::size_t>(C), kvd = static_cast<std::size_t>(KVD),
                      f = static_cast<std::size_t>(F);
    vec(blk(l, "attn_norm"), C, L.ln1_w);
    mat(blk(l, "attn_q"), C, C, L.qkv_w);
    mat(blk(l, "attn_k"), KVD, C, L.qkv_w + c * c);
    mat(blk(l, "attn_v"), KVD, C, L.qkv_w + c * c + kvd * c);
    mat(blk(l, "attn_output"), C, C, L.attproj_w);
    vec(blk(l, "ffn_norm"), C, L.ln2_w);
    mat(blk(l, "ffn_gate"), F, C, L.fc_w);
    mat(blk(l, "ffn_up"), F, C, L.fc_w + f * c);
    mat(blk(l, "ffn_down"), C, F, L.fcproj_w);
  }
  vec("output_norm.weight", C, v.lnf_w);
  if (!mc.tie_embeddings) mat("output.weight", V, C, v.lm_head);
  return w;
}

GgufWriter mpt_to_gguf(const Transformer& m, const Tokenizer& tok, std::uint32_t type) {
  const ModelConfig& mc = m.config();
  const PositionMethod pm = mc.position;
  const int C = mc.n_embd, F = mc.mlp_hidden, V = mc.vocab_size, L = mc.block_size;
  GgufWriter w;
  w.set_string("general.architecture", "mpt");
  w.set_string("general.name", "stretch-gpt-" + std::string(to_string(pm)));
  w.set_u32("general.file_type", file_type(type));
  w.set_u32(mpt("vocab_size"), static_cast<std::uint32_t>(V));
  w.set_u32(mpt("context_length"), static_cast<std::uint32_t>(L));
  w.set_u32(mpt("embedding_length"), static_cast<std::uint32_t>(C));
  w.set_u32(mpt("block_count"), static_cast<std::uint32_t>(mc.n_layer));
  w.set_u32(mpt("feed_forward_length"), static_cast<std::uint32_t>(F));
  w.set_u32(mpt("attention.head_count"), static_cast<std::uint32_t>(mc.n_head));
  w.set_u32(mpt("attention.head_count_kv"), static_cast<std::uint32_t>(mc.n_head));
  w.set_f32(mpt("attention.layer_norm_epsilon"), mc.norm_eps);
  if (pm == PositionMethod::alibi) w.set_f32(mpt("attention.max_alibi_bias"), static_cast<float>(mc.alibi_max_bias));
  write_tokenizer(w, tok, V);

  const ConstParamView v = bind_param_view(mc, m.specs(), m.params().data());
  const TensorSink out{w, type};
  const std::size_t vc = static_cast<std::size_t>(V) * static_cast<std::size_t>(C);
  std::vector<float> scaled;
  const float* embd = v.wte;
  if (mc.embed_scale != 1.0f) {  // ours: embed_scale * wte[token], computed in float; the same product here
    scaled.resize(vc);
    for (std::size_t i = 0; i < vc; i++) scaled[i] = mc.embed_scale * v.wte[i];
    embd = scaled.data();
  }
  out.mat("token_embd.weight", V, C, embd);
  std::vector<float> table;
  if (pm == PositionMethod::learned) {
    out.w.add_tensor("position_embd.weight", {L, C}, ggml_type::F32, v.wpe);
  } else if (pm == PositionMethod::sinusoidal) {
    table.assign(static_cast<std::size_t>(L) * static_cast<std::size_t>(C), 0.0f);
    std::vector<int> pos(static_cast<std::size_t>(L));
    for (int t = 0; t < L; t++) pos[static_cast<std::size_t>(t)] = t;
    sinusoidal_add_forward(table.data(), pos.data(), L, C);  // 0 + pe: the values ours adds
    out.w.add_tensor("position_embd.weight", {L, C}, ggml_type::F32, table.data());
  }
  auto norm = [&](const std::string& w_name, const std::string& b_name, const float* wt, const float* b) {
    out.vec(w_name, C, wt);
    if (mc.bias) out.vec(b_name, C, b);
  };
  for (int l = 0; l < mc.n_layer; l++) {
    const ConstLayerView& Lv = v.layers[static_cast<std::size_t>(l)];
    norm(blk(l, "attn_norm"), blk(l, "attn_norm", "bias"), Lv.ln1_w, Lv.ln1_b);
    out.mat(blk(l, "attn_qkv"), 3 * C, C, Lv.qkv_w);
    if (mc.bias) out.vec(blk(l, "attn_qkv", "bias"), 3 * C, Lv.qkv_b);
    out.mat(blk(l, "attn_output"), C, C, Lv.attproj_w);
    if (mc.bias) out.vec(blk(l, "attn_output", "bias"), C, Lv.attproj_b);
    norm(blk(l, "ffn_norm"), blk(l, "ffn_norm", "bias"), Lv.ln2_w, Lv.ln2_b);
    out.mat(blk(l, "ffn_up"), F, C, Lv.fc_w);
    if (mc.bias) out.vec(blk(l, "ffn_up", "bias"), F, Lv.fc_b);
    out.mat(blk(l, "ffn_down"), C, F, Lv.fcproj_w);
    if (mc.bias) out.vec(blk(l, "ffn_down", "bias"), C, Lv.fcproj_b);
  }
  norm("output_norm.weight", "output_norm.bias", v.lnf_w, v.lnf_b);
  if (!mc.tie_embeddings) out.mat("output.weight", V, C, v.lm_head);
  else if (mc.embed_scale != 1.0f) out.mat("output.weight", V, C, v.wte);
  return w;
}

}  // namespace

std::string gguf_architecture(const ModelConfig& mc) {
  if (mc.attn_window != 0) throw ConfigError("GGUF export: attn_window (sliding-window attention) is not supported");
  if (mc.logn != LognMode::off) throw ConfigError("GGUF export: logn attention is not supported");
  if (!mc.extension.is_none())
    throw ConfigError("GGUF export: the extension " + mc.extension.to_string() + " is not supported (a run-time "
                      "setting: llama.cpp has its own --grp-attn-n / --grp-attn-w)");
  if (mc.alibi_interp != 0) throw ConfigError("GGUF export: ALiBi interpolation (alibi_interp) is not supported");
  if (mc.embed_norm)
    throw ConfigError("GGUF export: the embedding LayerNorm (embed_norm) is not supported by the llama or mpt layouts");
  if (mc.activation != Activation::gelu_tanh)
    throw ConfigError("GGUF export: the exact GELU (activation gelu) is not supported: llama.cpp's mpt graph computes "
                      "the tanh approximation");
  if (mc.qkv_bias) throw ConfigError("GGUF export: q/k/v biases (qkv_bias) are not supported by the llama layout");
  if (mc.arch == Arch::llama) {
    if (mc.position != PositionMethod::rope)
      throw ConfigError("GGUF export: position method \"" + std::string(to_string(mc.position)) +
                        "\" is not supported for arch llama (GGUF's \"llama\" architecture needs position rope)");
    if (mc.embed_scale != 1.0f) throw ConfigError("GGUF export: embed_scale != 1 is not supported for arch llama");
    if (mc.bias) throw ConfigError("GGUF export: biases are not supported by the llama layout");
    return kArch;
  }
  const PositionMethod pm = mc.position;
  if (pm != PositionMethod::alibi && pm != PositionMethod::none && pm != PositionMethod::learned &&
      pm != PositionMethod::sinusoidal)
    throw ConfigError("GGUF export: position method \"" + std::string(to_string(pm)) +
                      "\" is not supported for arch gpt (GGUF's \"mpt\" architecture: alibi, none, learned, "
                      "sinusoidal; rope models: arch llama)");
  if (mc.n_kv_head != 0 && mc.n_kv_head != mc.n_head)
    throw ConfigError("GGUF export: grouped-query attention (n_kv_head) is not supported for arch gpt");
  return "mpt";
}

GgufWriter model_to_gguf(const Transformer& m, const Tokenizer& tok, std::uint32_t type) {
  const std::string arch = gguf_architecture(m.config());
  if (type != ggml_type::F32 && type != ggml_type::F16 && type != ggml_type::BF16 && type != ggml_type::Q8_0)
    throw ConfigError("GGUF export: tensor type " + ggml_type_name(type) + " is not supported (F32, F16, BF16, Q8_0)");
  return arch == kArch ? llama_to_gguf(m, tok, type) : mpt_to_gguf(m, tok, type);
}

namespace {

int get_count(const GgufReader& r, const std::string& k) {
  const std::uint64_t v = r.get_uint(k);
  if (v == 0 || v > 0x7fffffffu)
    throw InputError(r.source() + ": metadata " + k + " is " + std::to_string(v) + " (expected 1 .. 2^31-1)");
  return static_cast<int>(v);
}

// Reads `name` (row-major shape {rows, cols} or {rows} when cols == 0) into dst.
void read_into(const GgufReader& r, const std::string& name, std::int64_t rows, std::int64_t cols, float* dst) {
  if (!r.has_tensor(name)) throw InputError(r.source() + ": missing tensor " + name);
  const GgufTensorInfo& t = r.tensor(name);
  const std::vector<std::int64_t> want = cols ? std::vector<std::int64_t>{rows, cols} : std::vector<std::int64_t>{rows};
  if (t.shape_rowmajor != want) {
    auto str = [](const std::vector<std::int64_t>& s) {
      std::string o = "(";
      for (std::size_t i = 0; i < s.size(); i++) o += (i ? ", " : "") + std::to_string(s[i]);
      return o + ")";
    };
    throw InputError(r.source() + ": tensor " + name + " has shape " + str(t.shape_rowmajor) + " (expected " +
                     str(want) + ", row-major)");
  }
  if (!ggml_type_supported(t.type))
    throw InputError(r.source() + ": tensor " + name + " has type " + ggml_type_name(t.type) +
                     " (supported: F32, F16, BF16, Q8_0)");
  const std::vector<float> x = r.read_f32(name);
  std::copy(x.begin(), x.end(), dst);
  r.release(name);  // each tensor is read once: its file pages need not stay resident beside the model
}

// A model from `c` with every parameter zero (filled by the readers), or InputError naming the source. Every
// matrix, embedding and position table comes from a tensor of the file, so a model needing far more values than the
// file's tensors hold is refused before anything is allocated (counts in the metadata alone, e.g. block_count 1024
// and feed_forward_length 262144 in a 16 KB file, would otherwise ask for tens of GB). The margin leaves a file
// that merely lacks a tensor or two to the messages naming them.
std::unique_ptr<Transformer> make_model(const ModelConfig& c, const GgufReader& r) {
  const std::string& src = r.source();
  try {
    c.validate([&](const std::string& f) { return src + ": " + f; });
  } catch (const ConfigError& e) {
    throw InputError(e.what());
  }
  std::uint64_t need = 0, have = 0;
  for (const ParamSpec& s : param_specs(c))
    if (s.kind == ParamKind::matrix || s.kind == ParamKind::embedding || s.kind == ParamKind::position)
      need += s.numel();
  for (const GgufTensorInfo& t : r.tensors()) have += t.numel();
  if (need > 2 * have + (std::uint64_t{1} << 20))
    throw InputError(src + ": the metadata describes a model with " + std::to_string(need) +
                     " weights in matrices, embeddings and position tables, but the file's tensors hold only " +
                     std::to_string(have) + " values");
  auto m = std::make_unique<Transformer>(c);
  m->params().zero();
  return m;
}

// The vocabulary size: token_embd.weight's rows (checked against `vocab_key` when present).
int vocab_rows(const GgufReader& r, int n_embd, const std::string& vocab_key) {
  const std::string& src = r.source();
  if (!r.has_tensor("token_embd.weight")) throw InputError(src + ": missing tensor token_embd.weight");
  const GgufTensorInfo& t = r.tensor("token_embd.weight");
  if (t.shape_rowmajor.size() != 2 || t.shape_rowmajor[1] != n_embd || t.shape_rowmajor[0] <= 0 ||
      t.shape_rowmajor[0] > 0x7fffffff)
    throw InputError(src + ": tensor token_embd.weight must be (vocab, " + std::to_string(n_embd) + ")");
  const int V = static_cast<int>(t.shape_rowmajor[0]);
  if (r.has(vocab_key) && r.get_uint(vocab_key) != static_cast<std::uint64_t>(V))
    throw InputError(src + ": " + vocab_key + " is " + std::to_string(r.get_uint(vocab_key)) +
                     " but token_embd.weight has " + std::to_string(V) + " rows");
  return V;
}

// The RoPE scaling of a llama GGUF (see the header): llama.cpp's rope.scaling.* keys (linear, yarn with its
// attn_factor), the rope_freqs.weight table (llama3 with our stretch.rope.scaling.* keys, else longrope with one
// table) and what cannot be combined. `c` has head_dim, block_size and rope_base set.
RopeScaling rope_scaling_from_gguf(const GgufReader& r, const ModelConfig& c) {
  const std::string& src = r.source();
  const int hd = c.head_dim();
  auto orig_or_zero = [&](const std::string& k) {
    const int orig = get_count(r, k);
    return orig == c.block_size ? 0 : orig;
  };
  auto checked = [&](const RopeScaling& s, const std::string& what) {
    try {
      s.validate();
    } catch (const ConfigError& e) {
      throw InputError(src + ": " + what + ": " + e.what());
    }
    return s;
  };
  const std::string attn_key = key("rope.scaling.attn_factor");
  const double attn = r.has(attn_key) ? r.get_float(attn_key) : 1.0;
  if (!std::isfinite(attn) || !(attn > 0.0))
    throw InputError(src + ": " + attn_key + " is " + std::to_string(attn) + " (expected a positive number)");
  std::string st = r.has(key("rope.scaling.type")) ? r.get_string(key("rope.scaling.type")) : "none";
  const std::string table_name = "rope_freqs.weight";
  const bool table = r.has_tensor(table_name);
  const bool ours = r.has(kStretchScaling + "type");
  if (table || ours) {
    if (st != "none")
      throw InputError(src + ": " + table_name + " together with " + key("rope.scaling.type") + " \"" + st +
                       "\" is not supported (a frequency table replaces the scaling type)");
    if (!table) throw InputError(src + ": " + kStretchScaling + "type is set but the file has no " + table_name);
    std::vector<float> t(static_cast<std::size_t>(hd / 2));
    read_into(r, table_name, hd / 2, 0, t.data());
    RopeScaling s;
    if (ours) {
      const std::string& ty = r.get_string(kStretchScaling + "type");
      if (ty != "llama3")
        throw InputError(src + ": " + kStretchScaling + "type is \"" + ty + "\" (expected \"llama3\")");
      s.type = RopeScalingType::llama3;
      s.factor = r.get_float(kStretchScaling + "factor");
      s.low_freq_factor = r.get_float(kStretchScaling + "low_freq_factor");
      s.high_freq_factor = r.get_float(kStretchScaling + "high_freq_factor");
      s.original_context = orig_or_zero(kStretchScaling + "original_context_length");
      checked(s, kStretchScaling + "*");
      if (attn != 1.0)
        throw InputError(src + ": " + attn_key + " " + std::to_string(attn) + " with llama3 scaling (which has none)");
      const auto want = rope_freq_divisors(s, hd, c.rope_base, c.block_size, c.block_size);
      for (std::size_t i = 0; i < want.size(); i++)
        if (!(std::fabs(t[i] - want[i]) <= 1e-5 * want[i]))
          throw InputError(src + ": " + table_name + "[" + std::to_string(i) + "] is " + std::to_string(t[i]) +
                           " but " + kStretchScaling + "* (" + s.to_string() + ") gives " + std::to_string(want[i]));
    } else {  // llama.cpp's own files (Llama 3.1): one table for every length
      s.type = RopeScalingType::longrope;
      s.short_factor.assign(t.begin(), t.end());
      s.long_factor = s.short_factor;
      if (attn != 1.0) s.attention_factor = attn;
      checked(s, table_name);
    }
    return s;
  }
  RopeScaling s;
  if (st == "linear") s.type = RopeScalingType::linear;
  else if (st == "yarn") s.type = RopeScalingType::yarn;
  else if (st != "none")
    throw InputError(src + ": " + key("rope.scaling.type") + " is \"" + st + "\" (supported: none, linear, yarn)");
  if (!s.is_none()) {
    s.factor = r.get_float(key("rope.scaling.factor"));
    if (r.has(key("rope.scaling.original_context_length")))
      s.original_context = orig_or_zero(key("rope.scaling.original_context_length"));
    if (s.type == RopeScalingType::yarn) {
      if (r.has(key("rope.scaling.yarn_beta_fast"))) s.beta_fast = r.get_float(key("rope.scaling.yarn_beta_fast"));
      if (r.has(key("rope.scaling.yarn_beta_slow"))) s.beta_slow = r.get_float(key("rope.scaling.yarn_beta_slow"));
      // ggml's own 1 + 0.1 ln s times attn_factor
      if (attn != 1.0 && std::isfinite(s.factor))
        s.attention_factor = attn * (s.factor <= 1.0 ? 1.0 : 1.0 + 0.1 * std::log(s.factor));
    }
    checked(s, "rope scaling keys");
  }
  if (attn != 1.0 && s.type != RopeScalingType::yarn)
    throw InputError(src + ": " + attn_key + " " + std::to_string(attn) + " with rope scaling type \"" + st +
                     "\" is not supported (only yarn and a rope_freqs table take an attention factor)");
  return s;
}

std::unique_ptr<Transformer> llama_model(const GgufReader& r) {
  const std::string& src = r.source();
  ModelConfig c;
  c.arch = Arch::llama;
  c.position = PositionMethod::rope;
  c.bias = false;
  c.n_layer = get_count(r, key("block_count"));
  c.n_embd = get_count(r, key("embedding_length"));
  c.mlp_hidden = get_count(r, key("feed_forward_length"));
  c.n_head = get_count(r, key("attention.head_count"));
  const int kv = r.has(key("attention.head_count_kv")) ? get_count(r, key("attention.head_count_kv")) : c.n_head;
  c.n_kv_head = kv == c.n_head ? 0 : kv;
  c.block_size = get_count(r, key("context_length"));
  c.rope_base = r.has(key("rope.freq_base")) ? r.get_float(key("rope.freq_base")) : 10000.0;
  c.norm_eps = static_cast<float>(r.get_float(key("attention.layer_norm_rms_epsilon")));
  if (c.n_embd % c.n_head != 0)
    throw InputError(src + ": " + key("embedding_length") + " " + std::to_string(c.n_embd) +
                     " is not a multiple of " + key("attention.head_count") + " " + std::to_string(c.n_head));
  if (r.has(key("rope.dimension_count")) && r.get_uint(key("rope.dimension_count")) != static_cast<std::uint64_t>(c.head_dim()))
    throw InputError(src + ": " + key("rope.dimension_count") + " is " +
                     std::to_string(r.get_uint(key("rope.dimension_count"))) + " (expected head_dim " +
                     std::to_string(c.head_dim()) + "; partial rotary is not supported)");
  c.vocab_size = vocab_rows(r, c.n_embd, key("vocab_size"));
  c.tie_embeddings = !r.has_tensor("output.weight");
  c.rope_scaling = rope_scaling_from_gguf(r, c);
  std::unique_ptr<Transformer> model = make_model(c, r);
  Transformer& m = *model;
  ParamView v = bind_param_view(c, m.specs(), m.params().data());
  const std::int64_t C = c.n_embd, KVD = c.kv_dim(), F = c.mlp_hidden, V = c.vocab_size;
  const std::size_t cc = static_cast<std::size_t>(C), kvd = static_cast<std::size_t>(KVD),
                    f = static_cast<std::size_t>(F);
  read_into(r, "token_embd.weight", V, C, v.wte);
  for (int l = 0; l < c.n_layer; l++) {
    const LayerView& L = v.layers[static_cast<std::size_t>(l)];
    read_into(r, blk(l, "attn_norm"), C, 0, L.ln1_w);
    read_into(r, blk(l, "attn_q"), C, C, L.qkv_w);
    read_into(r, blk(l, "attn_k"), KVD, C, L.qkv_w + cc * cc);
    read_into(r, blk(l, "attn_v"), KVD, C, L.qkv_w + cc * cc + kvd * cc);
    read_into(r, blk(l, "attn_output"), C, C, L.attproj_w);
    read_into(r, blk(l, "ffn_norm"), C, 0, L.ln2_w);
    read_into(r, blk(l, "ffn_gate"), F, C, L.fc_w);
    read_into(r, blk(l, "ffn_up"), F, C, L.fc_w + f * cc);
    read_into(r, blk(l, "ffn_down"), C, F, L.fcproj_w);
  }
  read_into(r, "output_norm.weight", C, 0, v.lnf_w);
  if (!c.tie_embeddings) read_into(r, "output.weight", V, C, v.lm_head);
  return model;
}

std::unique_ptr<Transformer> mpt_model(const GgufReader& r) {
  const std::string& src = r.source();
  for (const char* k : {"attention.clamp_kqv"})
    if (r.has(mpt(k))) throw InputError(src + ": " + mpt(k) + " is not supported (stretch's GPT does not clamp q, k, v)");
  ModelConfig c;
  c.arch = Arch::gpt;
  c.n_layer = get_count(r, mpt("block_count"));
  if (c.n_layer > 1024)  // ModelConfig's limit, checked now because the per-layer checks below come first
    throw InputError(src + ": " + mpt("block_count") + " is " + std::to_string(c.n_layer) + " (expected at most 1024)");
  c.n_embd = get_count(r, mpt("embedding_length"));
  c.mlp_hidden = get_count(r, mpt("feed_forward_length"));
  c.n_head = get_count(r, mpt("attention.head_count"));
  if (r.has(mpt("attention.head_count_kv")) && get_count(r, mpt("attention.head_count_kv")) != c.n_head)
    throw InputError(src + ": " + mpt("attention.head_count_kv") + " differs from " + mpt("attention.head_count") +
                     " (grouped-query attention is not supported for the mpt architecture)");
  c.block_size = get_count(r, mpt("context_length"));
  c.norm_eps = static_cast<float>(r.get_float(mpt("attention.layer_norm_epsilon")));
  const double max_bias = r.has(mpt("attention.max_alibi_bias")) ? r.get_float(mpt("attention.max_alibi_bias")) : 0.0;
  const bool table = r.has_tensor("position_embd.weight");
  if (max_bias < 0.0 || !std::isfinite(max_bias) || max_bias > 1024.0)
    throw InputError(src + ": " + mpt("attention.max_alibi_bias") + " is " + std::to_string(max_bias) +
                     " (expected 0, no ALiBi, or the slopes' maximum bias in (0, 1024])");
  if (max_bias != 0.0 && table)
    throw InputError(src + ": has both ALiBi (" + mpt("attention.max_alibi_bias") +
                     ") and position_embd.weight (supported: one or the other)");
  c.position = max_bias != 0.0 ? PositionMethod::alibi : table ? PositionMethod::learned : PositionMethod::none;
  if (c.position == PositionMethod::alibi) c.alibi_max_bias = max_bias;
  if (c.n_embd % c.n_head != 0)
    throw InputError(src + ": " + mpt("embedding_length") + " " + std::to_string(c.n_embd) +
                     " is not a multiple of " + mpt("attention.head_count") + " " + std::to_string(c.n_head));
  for (int l = 0; l < c.n_layer; l++)
    for (const char* t : {"attn_q_norm", "attn_k_norm", "ffn_act"})
      if (r.has_tensor(blk(l, t)) || r.has_tensor(blk(l, t, "scales")))
        throw InputError(src + ": tensor " + blk(l, t) + " is not supported (q/k LayerNorm and activation scales)");
  c.vocab_size = vocab_rows(r, c.n_embd, mpt("vocab_size"));
  c.tie_embeddings = !r.has_tensor("output.weight");
  // biases: ours are all or none; a file with some of them gets zeros for the others (the same function)
  bool any_bias = r.has_tensor("output_norm.bias");
  for (int l = 0; l < c.n_layer && !any_bias; l++)
    for (const char* t : {"attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"})
      any_bias = any_bias || r.has_tensor(blk(l, t, "bias"));
  c.bias = any_bias;

  std::unique_ptr<Transformer> model = make_model(c, r);
  ParamView v = bind_param_view(c, model->specs(), model->params().data());
  const std::int64_t C = c.n_embd, F = c.mlp_hidden, V = c.vocab_size;
  auto bias = [&](const std::string& name, std::int64_t n, float* dst) {
    if (r.has_tensor(name)) read_into(r, name, n, 0, dst);  // absent: stays zero
  };
  read_into(r, "token_embd.weight", V, C, v.wte);
  if (table) read_into(r, "position_embd.weight", c.block_size, C, v.wpe);
  for (int l = 0; l < c.n_layer; l++) {
    const LayerView& L = v.layers[static_cast<std::size_t>(l)];
    read_into(r, blk(l, "attn_norm"), C, 0, L.ln1_w);
    read_into(r, blk(l, "attn_qkv"), 3 * C, C, L.qkv_w);
    read_into(r, blk(l, "attn_output"), C, C, L.attproj_w);
    read_into(r, blk(l, "ffn_norm"), C, 0, L.ln2_w);
    read_into(r, blk(l, "ffn_up"), F, C, L.fc_w);
    read_into(r, blk(l, "ffn_down"), C, F, L.fcproj_w);
    if (!c.bias) continue;
    bias(blk(l, "attn_norm", "bias"), C, L.ln1_b);
    bias(blk(l, "attn_qkv", "bias"), 3 * C, L.qkv_b);
    bias(blk(l, "attn_output", "bias"), C, L.attproj_b);
    bias(blk(l, "ffn_norm", "bias"), C, L.ln2_b);
    bias(blk(l, "ffn_up", "bias"), F, L.fc_b);
    bias(blk(l, "ffn_down", "bias"), C, L.fcproj_b);
  }
  read_into(r, "output_norm.weight", C, 0, v.lnf_w);
  if (c.bias) bias("output_norm.bias", C, v.lnf_b);
  if (!c.tie_embeddings) read_into(r, "output.weight", V, C, v.lm_head);
  return model;
}

void read_tokenizer(const GgufReader& r, int V, GgufModel& out) {
  const std::string& src = r.source();
  if (r.has("tokenizer.ggml.model")) out.tokenizer_model = r.get_string("tokenizer.ggml.model");
  if (r.has("tokenizer.ggml.pre")) out.tokenizer_pre = r.get_string("tokenizer.ggml.pre");
  if (r.has("tokenizer.ggml.merges")) out.merges = r.get_string_array("tokenizer.ggml.merges");
  if (r.has("tokenizer.ggml.tokens")) {
    out.tokens = r.get_string_array("tokenizer.ggml.tokens");
    if (out.tokens.size() != static_cast<std::size_t>(V))
      throw InputError(src + ": tokenizer.ggml.tokens has " + std::to_string(out.tokens.size()) +
                       " entries (expected vocab_size " + std::to_string(V) + ")");
    if (r.has("tokenizer.ggml.scores")) {
      out.scores = r.get_f32_array("tokenizer.ggml.scores");
      if (out.scores.size() != out.tokens.size())
        throw InputError(src + ": tokenizer.ggml.scores has " + std::to_string(out.scores.size()) +
                         " entries (expected " + std::to_string(out.tokens.size()) + ")");
    }
    if (r.has("tokenizer.ggml.token_type")) {
      const auto t = r.get_i32_array("tokenizer.ggml.token_type");
      if (t.size() != out.tokens.size())
        throw InputError(src + ": tokenizer.ggml.token_type has " + std::to_string(t.size()) + " entries (expected " +
                         std::to_string(out.tokens.size()) + ")");
      out.token_types.assign(t.begin(), t.end());
    }
  }
  auto id = [&](const char* k) {
    if (!r.has(k)) return -1;
    const std::int64_t x = r.get_int(k);
    if (x < 0 || x >= V)
      throw InputError(src + ": " + k + " is " + std::to_string(x) + " (expected 0.." + std::to_string(V - 1) + ")");
    return static_cast<int>(x);
  };
  out.bos = id("tokenizer.ggml.bos_token_id");
  out.eos = id("tokenizer.ggml.eos_token_id");
}

}  // namespace

GgufModel model_from_gguf(const GgufReader& r) {
  const std::string& arch = r.get_string("general.architecture");
  GgufModel out;
  if (arch == kArch) out.model = llama_model(r);
  else if (arch == "mpt") out.model = mpt_model(r);
  else throw InputError(r.source() + ": general.architecture is \"" + arch + "\" (supported: llama, mpt)");
  read_tokenizer(r, out.model->config().vocab_size, out);
  return out;
}

}  // namespace stretch
