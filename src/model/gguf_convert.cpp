#include "model/gguf_convert.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.hpp"
#include "io/tokenizer_llama2c.hpp"

namespace stretch {

namespace {

const std::string kArch = "llama";
std::string key(const char* suffix) { return kArch + "." + suffix; }
std::string blk(int l, const char* suffix) { return "blk." + std::to_string(l) + "." + suffix + ".weight"; }

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

void write_tokenizer(GgufWriter& w, const Tokenizer& tok, int vocab_size) {
  const Llama2cVocab* v = llama2c_vocab(tok);
  if (!v)
    throw ConfigError("GGUF export: tokenizer type \"" + tok.type() +
                      "\" is not supported (supported: llama2c, written as tokenizer.ggml.model \"llama\")");
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

}  // namespace

GgufWriter llama_to_gguf(const Transformer& m, const Tokenizer& tok, std::uint32_t type) {
  const ModelConfig& mc = m.config();
  if (mc.arch != Arch::llama)
    throw ConfigError("GGUF export: arch \"" + std::string(to_string(mc.arch)) +
                      "\" is not supported (GGUF's \"llama\" architecture needs arch llama)");
  if (mc.position != PositionMethod::rope)
    throw ConfigError("GGUF export: position method \"" + std::string(to_string(mc.position)) +
                      "\" is not supported (GGUF's \"llama\" architecture needs position rope)");
  if (mc.attn_window != 0) throw ConfigError("GGUF export: attn_window (sliding-window attention) is not supported");
  if (mc.logn != LognMode::off) throw ConfigError("GGUF export: logn attention is not supported");
  if (mc.embed_scale != 1.0f) throw ConfigError("GGUF export: embed_scale != 1 is not supported");
  if (mc.bias) throw ConfigError("GGUF export: biases are not supported by the llama layout");
  if (type != ggml_type::F32 && type != ggml_type::F16 && type != ggml_type::BF16 && type != ggml_type::Q8_0)
    throw ConfigError("GGUF export: tensor type " + ggml_type_name(type) + " is not supported (F32, F16, BF16, Q8_0)");

  const int C = mc.n_embd, KVD = mc.kv_dim(), F = mc.mlp_hidden, V = mc.vocab_size, hd = mc.head_dim();
  GgufWriter w;
  w.set_string("general.architecture", kArch);
  w.set_string("general.name", "stretch-llama");
  const std::uint32_t file_type = type == ggml_type::F32 ? 0 : type == ggml_type::F16 ? 1 : type == ggml_type::Q8_0 ? 7 : 32;
  w.set_u32("general.file_type", file_type);
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
  switch (s.type) {
    case RopeScalingType::none:
      break;
    case RopeScalingType::ntk:
      base = mc.rope_base * std::pow(s.factor, static_cast<double>(hd) / (hd - 2));
      break;
    case RopeScalingType::linear:
    case RopeScalingType::yarn:
      if (s.type == RopeScalingType::yarn && s.attention_factor != 0.0)
        throw ConfigError("GGUF export: rope_scaling " + s.to_string() +
                          ": a non-default yarn attention_factor is not supported (llama.cpp uses 0.1 ln s + 1)");
      w.set_string(key("rope.scaling.type"), s.type == RopeScalingType::linear ? "linear" : "yarn");
      w.set_f32(key("rope.scaling.factor"), static_cast<float>(s.factor));
      w.set_u32(key("rope.scaling.original_context_length"), static_cast<std::uint32_t>(mc.rope_train_length()));
      if (s.type == RopeScalingType::yarn) {
        w.set_f32(key("rope.scaling.yarn_beta_fast"), static_cast<float>(s.beta_fast));
        w.set_f32(key("rope.scaling.yarn_beta_slow"), static_cast<float>(s.beta_slow));
      }
      break;
    case RopeScalingType::dynamic_ntk:
    case RopeScalingType::yarn_paper:
      throw ConfigError("GGUF export: rope_scaling " + s.to_string() +
                        " is not supported (llama.cpp's llama architecture expresses none, linear, yarn, and ntk "
                        "as a changed freq_base)");
  }
  w.set_f32(key("rope.freq_base"), static_cast<float>(base));
  w.set_f32(key("attention.layer_norm_rms_epsilon"), mc.norm_eps);
  write_tokenizer(w, tok, V);

  ParamView v = bind_param_view(mc, m.specs(), const_cast<float*>(m.params().data()));
  auto mat = [&](const std::string& name, std::int64_t rows, std::int64_t cols, const float* data) {
    std::uint32_t t = type;
    if (t == ggml_type::Q8_0 && cols % kQ8_0BlockValues != 0) t = ggml_type::F16;
    w.add_tensor(name, {rows, cols}, t, data);
  };
  auto vec = [&](const std::string& name, std::int64_t n, const float* data) {
    w.add_tensor(name, {n}, ggml_type::F32, data);
  };
  mat("token_embd.weight", V, C, v.wte);
  for (int l = 0; l < mc.n_layer; l++) {
    const LayerView& L = v.layers[static_cast<std::size_t>(l)];
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
}

}  // namespace

GgufModel llama_from_gguf(const GgufReader& r) {
  const std::string& src = r.source();
  const std::string& arch = r.get_string("general.architecture");
  if (arch != kArch)
    throw InputError(src + ": general.architecture is \"" + arch + "\" (expected \"llama\")");
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
  if (!r.has_tensor("token_embd.weight")) throw InputError(src + ": missing tensor token_embd.weight");
  {
    const GgufTensorInfo& t = r.tensor("token_embd.weight");
    if (t.shape_rowmajor.size() != 2 || t.shape_rowmajor[1] != c.n_embd || t.shape_rowmajor[0] <= 0 ||
        t.shape_rowmajor[0] > 0x7fffffff)
      throw InputError(src + ": tensor token_embd.weight must be (vocab, " + std::to_string(c.n_embd) + ")");
    c.vocab_size = static_cast<int>(t.shape_rowmajor[0]);
  }
  if (r.has(key("vocab_size")) && r.get_uint(key("vocab_size")) != static_cast<std::uint64_t>(c.vocab_size))
    throw InputError(src + ": " + key("vocab_size") + " is " + std::to_string(r.get_uint(key("vocab_size"))) +
                     " but token_embd.weight has " + std::to_string(c.vocab_size) + " rows");
  c.tie_embeddings = !r.has_tensor("output.weight");
  if (r.has(key("rope.scaling.type"))) {
    const std::string& st = r.get_string(key("rope.scaling.type"));
    RopeScaling s;
    if (st == "linear") s.type = RopeScalingType::linear;
    else if (st == "yarn") s.type = RopeScalingType::yarn;
    else if (st != "none")
      throw InputError(src + ": " + key("rope.scaling.type") + " is \"" + st + "\" (supported: none, linear, yarn)");
    if (!s.is_none()) {
      s.factor = r.get_float(key("rope.scaling.factor"));
      if (r.has(key("rope.scaling.original_context_length"))) {
        const int orig = get_count(r, key("rope.scaling.original_context_length"));
        s.original_context = orig == c.block_size ? 0 : orig;
      }
      if (s.type == RopeScalingType::yarn) {
        if (r.has(key("rope.scaling.yarn_beta_fast"))) s.beta_fast = r.get_float(key("rope.scaling.yarn_beta_fast"));
        if (r.has(key("rope.scaling.yarn_beta_slow"))) s.beta_slow = r.get_float(key("rope.scaling.yarn_beta_slow"));
      }
      try {
        s.validate();
      } catch (const ConfigError& e) {
        throw InputError(src + ": rope scaling keys: " + e.what());
      }
      c.rope_scaling = s;
    }
  }
  try {
    c.validate([&](const std::string& f) { return src + ": " + f; });
  } catch (const ConfigError& e) {
    throw InputError(e.what());
  }

  GgufModel out;
  out.model = std::make_unique<Transformer>(c);
  Transformer& m = *out.model;
  m.params().zero();
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
  return out;
}

}  // namespace stretch
