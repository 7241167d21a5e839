// Our models <-> llama.cpp's GGUF "llama" and "mpt" layouts (model/gguf_convert.hpp): F32 round trips are
// bit-identical (weights, config, logits), F16 / Q8_0 are within their quantization error, stories260K's
// tokenizer metadata is llama.cpp's, GPT models map to MPT exactly (biases, ALiBi, learned / sinusoidal tables,
// embed_scale), byte and GPT-2 vocabularies become gpt2-style tokenizers, and bad models / files are refused
// naming the problem.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "io/gguf.hpp"
#include "io/llama2c.hpp"
#include "io/tokenizer.hpp"
#include "io/tokenizer_llama2c.hpp"
#include "model/params.hpp"
#include "model/gguf_convert.hpp"
#include "model/llama2c_convert.hpp"
#include "position/rope.hpp"
#include "position/rope_scaling.hpp"
#include "test_util.hpp"

namespace stretch {
namespace {
using namespace stretch::test;

constexpr int kVocab = 300;

// A llama2.c tokenizer.bin: <unk>, <s>, </s>, the 256 byte tokens, " ", " the", then filler pieces.
std::filesystem::path write_tiny_tokenizer(const TempDir& dir) {
  std::vector<std::string> pieces = {"<unk>", "<s>", "</s>"};
  static const char* hex = "0123456789ABCDEF";
  for (int b = 0; b < 256; b++) pieces.push_back(std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">");
  pieces.push_back(" ");
  pieces.push_back(" the");
  while (static_cast<int>(pieces.size()) < kVocab) pieces.push_back("p" + std::to_string(pieces.size()));
  std::string bytes;
  auto put = [&](const void* p, std::size_t n) { bytes.append(static_cast<const char*>(p), n); };
  const std::int32_t max_len = 8;
  put(&max_len, 4);
  for (std::size_t i = 0; i < pieces.size(); i++) {
    const float score = i < 259 ? 0.0f : -static_cast<float>(i);
    const auto len = static_cast<std::int32_t>(pieces[i].size());
    put(&score, 4);
    put(&len, 4);
    put(pieces[i].data(), pieces[i].size());
  }
  const auto path = dir / "tok.bin";
  write_text(path, bytes);
  return path;
}

ModelConfig small_config() {
  ModelConfig c;
  c.arch = Arch::llama;
  c.vocab_size = kVocab;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = 2;
  c.n_embd = 64;
  c.mlp_hidden = 96;
  c.block_size = 64;
  c.position = PositionMethod::rope;
  c.bias = false;
  c.tie_embeddings = false;
  c.rope_scaling = RopeScaling::parse("yarn:4", "test");
  return c;
}

std::unique_ptr<Transformer> small_model() {
  auto m = std::make_unique<Transformer>(small_config());
  m->init_weights(7);
  Rng rng(11);
  for (const ParamSpec& s : m->specs())
    if (s.kind == ParamKind::norm)
      for (std::size_t i = 0; i < s.numel(); i++) m->params().data()[s.offset + i] += 0.2f * rng.normal();
  return m;
}

std::vector<float> logits(Transformer& m) {
  std::vector<std::int32_t> tokens;
  for (int t = 0; t < 24; t++) tokens.push_back((t * 37 + 5) % kVocab);
  ForwardOptions fo;
  fo.keep_logits = true;
  m.forward(tokens.data(), nullptr, nullptr, 1, static_cast<int>(tokens.size()), fo);
  const float* p = m.logits();
  return std::vector<float>(p, p + tokens.size() * static_cast<std::size_t>(m.config().vocab_size));
}

GgufModel round_trip(const Transformer& m, const Tokenizer& tok, std::uint32_t type) {
  GgufWriter w = model_to_gguf(m, tok, type);
  return model_from_gguf(GgufReader::parse(w.serialize(), "test.gguf"));
}

// Largest |a - b| over every parameter (padding included: both are zero there).
double max_param_diff(const Transformer& a, const Transformer& b, double* max_abs) {
  double d = 0, mx = 0;
  for (std::size_t i = 0; i < a.params().size(); i++) {
    d = std::max(d, std::fabs(static_cast<double>(a.params().data()[i]) - b.params().data()[i]));
    mx = std::max(mx, std::fabs(static_cast<double>(a.params().data()[i])));
  }
  if (max_abs) *max_abs = mx;
  return d;
}

TEST(GgufConvert, F32RoundTripIsBitIdentical) {
  TempDir dir;
  auto tok = load_llama2c_tokenizer(write_tiny_tokenizer(dir), kVocab);
  auto m = small_model();
  GgufModel g = round_trip(*m, *tok, ggml_type::F32);
  ASSERT_TRUE(g.model);
  EXPECT_EQ(g.model->config().to_json(), m->config().to_json());
  ASSERT_EQ(g.model->params().size(), m->params().size());
  EXPECT_EQ(std::memcmp(g.model->params().data(), m->params().data(), m->params().size() * sizeof(float)), 0);
  EXPECT_EQ(logits(*g.model), logits(*m));
  ASSERT_EQ(g.tokens.size(), static_cast<std::size_t>(kVocab));
  EXPECT_EQ(g.tokens[259], "\xE2\x96\x81");
  EXPECT_EQ(g.tokens[260], "\xE2\x96\x81the");
  EXPECT_EQ(g.bos, 1);
  EXPECT_EQ(g.eos, 2);
  EXPECT_EQ(g.scores[270], -270.0f);
  EXPECT_EQ(g.token_types[0], 2);
  EXPECT_EQ(g.token_types[1], 3);
  EXPECT_EQ(g.token_types[3 + 0x41], 6);
  EXPECT_EQ(g.token_types[260], 1);
}

TEST(GgufConvert, F16AndQ8_0AreWithinQuantizationError) {
  TempDir dir;
  auto tok = load_llama2c_tokenizer(write_tiny_tokenizer(dir), kVocab);
  auto m = small_model();
  const auto ref = logits(*m);
  for (auto [type, tol, ltol] : {std::tuple{ggml_type::F16, 1e-3, 1e-2}, std::tuple{ggml_type::Q8_0, 1e-2, 5e-2}}) {
    GgufModel g = round_trip(*m, *tok, type);
    EXPECT_EQ(g.model->config().to_json(), m->config().to_json()) << ggml_type_name(type);
    double mx = 0;
    const double d = max_param_diff(*m, *g.model, &mx);
    EXPECT_GT(d, 0.0) << ggml_type_name(type);
    EXPECT_LT(d, tol * mx) << ggml_type_name(type);
    const auto got = logits(*g.model);
    double num = 0, den = 0;
    for (std::size_t i = 0; i < ref.size(); i++) {
      num += (got[i] - ref[i]) * (got[i] - ref[i]);
      den += ref[i] * ref[i];
    }
    EXPECT_LT(std::sqrt(num / den), ltol) << ggml_type_name(type);
  }
}

TEST(GgufConvert, Stories260kMetadataAndTokenizer) {
  const auto bin = shared_data() / "llama2c" / "stories260K.bin";
  const auto tokf = shared_data() / "llama2c" / "tok512.bin";
  if (!std::filesystem::exists(bin) || !std::filesystem::exists(tokf))
    GTEST_SKIP() << "needs " << bin << " and " << tokf << " (../shared/data beside the repository)";
  auto m = model_from_llama2c(read_llama2c(bin));
  auto tok = load_llama2c_tokenizer(tokf, m->config().vocab_size);
  const ModelConfig& c = m->config();
  for (std::uint32_t type : {ggml_type::F32, ggml_type::Q8_0}) {
    const GgufWriter w = model_to_gguf(*m, *tok, type);
    // STRETCH_GGUF_EXPORT_DIR=dir keeps the files (for tools/check_gguf_export.py)
    if (const char* keep = std::getenv("STRETCH_GGUF_EXPORT_DIR"))
      w.write(std::filesystem::path(keep) / ("stories260K-" + ggml_type_name(type) + ".gguf"));
    GgufReader r = GgufReader::parse(w.serialize(), "stories260K.gguf");
    EXPECT_EQ(r.get_string("general.architecture"), "llama");
    EXPECT_EQ(r.get_u32("llama.context_length"), static_cast<std::uint32_t>(c.block_size));
    EXPECT_EQ(r.get_u32("llama.embedding_length"), static_cast<std::uint32_t>(c.n_embd));
    EXPECT_EQ(r.get_u32("llama.block_count"), static_cast<std::uint32_t>(c.n_layer));
    EXPECT_EQ(r.get_u32("llama.feed_forward_length"), static_cast<std::uint32_t>(c.mlp_hidden));
    EXPECT_EQ(r.get_u32("llama.attention.head_count"), static_cast<std::uint32_t>(c.n_head));
    EXPECT_EQ(r.get_u32("llama.attention.head_count_kv"), static_cast<std::uint32_t>(c.kv_heads()));
    EXPECT_EQ(r.get_u32("llama.rope.dimension_count"), static_cast<std::uint32_t>(c.head_dim()));
    EXPECT_EQ(r.get_f32("llama.rope.freq_base"), 10000.0f);
    EXPECT_EQ(r.get_f32("llama.attention.layer_norm_rms_epsilon"), c.norm_eps);
    EXPECT_FALSE(r.has("llama.rope.scaling.type"));
    EXPECT_EQ(r.get_string("tokenizer.ggml.model"), "llama");
    const auto tokens = r.get_string_array("tokenizer.ggml.tokens");
    const auto scores = r.get_f32_array("tokenizer.ggml.scores");
    const auto types = r.get_i32_array("tokenizer.ggml.token_type");
    ASSERT_EQ(tokens.size(), 512u);
    ASSERT_EQ(scores.size(), 512u);
    ASSERT_EQ(types.size(), 512u);
    EXPECT_EQ(tokens[0], "<unk>");
    EXPECT_EQ(tokens[1], "<s>");
    EXPECT_EQ(tokens[2], "</s>");
    EXPECT_EQ(types[0], 2);
    EXPECT_EQ(types[1], 3);
    EXPECT_EQ(types[2], 3);
    EXPECT_EQ(tokens[3 + 0x0A], "<0x0A>");
    EXPECT_EQ(types[3 + 0x0A], 6);
    const Llama2cVocab* v = llama2c_vocab(*tok);
    ASSERT_NE(v, nullptr);
    bool found_the = false;
    for (std::size_t i = 259; i < tokens.size(); i++) {
      EXPECT_EQ(types[i], 1) << i;
      EXPECT_EQ(scores[i], v->scores[i]) << i;
      if (v->pieces[i] == " the") {
        found_the = true;
        EXPECT_EQ(tokens[i], "\xE2\x96\x81the");
      }
      EXPECT_EQ(tokens[i].find(' '), std::string::npos) << i;
    }
    EXPECT_TRUE(found_the) << "tok512.bin has no \" the\" piece";
    EXPECT_EQ(r.get_u32("tokenizer.ggml.bos_token_id"), 1u);
    EXPECT_EQ(r.get_u32("tokenizer.ggml.eos_token_id"), 2u);
    EXPECT_EQ(r.get_u32("tokenizer.ggml.unknown_token_id"), 0u);
    EXPECT_EQ(r.has_tensor("output.weight"), !c.tie_embeddings);
    // the import gives the same model (Q8_0 dequantized; ffn_down (row length 172) falls back to F16)
    GgufModel g = model_from_gguf(r);
    EXPECT_EQ(g.model->config().to_json(), c.to_json());
    if (type == ggml_type::Q8_0) {
      EXPECT_EQ(r.tensor("blk.0.ffn_down.weight").type, ggml_type::F16);
      EXPECT_EQ(r.tensor("blk.0.attn_q.weight").type, ggml_type::Q8_0);
    } else {
      EXPECT_EQ(std::memcmp(g.model->params().data(), m->params().data(), m->params().size() * sizeof(float)), 0);
    }
  }
}

template <class E, class Fn>
void expect_error(Fn&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning " << needle;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(GgufConvert, RefusesModelsItCannotExpress) {
  TempDir dir;
  auto tok = load_llama2c_tokenizer(write_tiny_tokenizer(dir), kVocab);
  ModelConfig gpt;
  gpt.vocab_size = kVocab;
  gpt.n_layer = 1;
  gpt.n_embd = 64;
  gpt.n_head = 4;
  gpt.mlp_hidden = 128;
  gpt.block_size = 32;
  gpt.position = PositionMethod::rope;
  expect_error<ConfigError>([&] { model_to_gguf(Transformer(gpt), *tok); }, "position method \"rope\"");
  gpt.position = PositionMethod::t5;
  expect_error<ConfigError>([&] { model_to_gguf(Transformer(gpt), *tok); }, "position method \"t5\"");
  gpt.position = PositionMethod::alibi;
  gpt.attn_window = 8;
  expect_error<ConfigError>([&] { model_to_gguf(Transformer(gpt), *tok); }, "attn_window");
  ModelConfig alibi = small_config();
  alibi.position = PositionMethod::alibi;
  alibi.rope_scaling = RopeScaling{};
  expect_error<ConfigError>([&] { model_to_gguf(Transformer(alibi), *tok); }, "position");
  ModelConfig dyn = small_config();
  dyn.rope_scaling = RopeScaling::parse("dynamic-ntk:2", "test");
  expect_error<ConfigError>([&] { model_to_gguf(Transformer(dyn), *tok); }, "dynamic-ntk");
  auto byte = make_byte_tokenizer();
  expect_error<ConfigError>([&] { model_to_gguf(Transformer(small_config()), *byte); }, "256 tokens");
}

TEST(GgufConvert, NtkBecomesAChangedFreqBase) {
  TempDir dir;
  auto tok = load_llama2c_tokenizer(write_tiny_tokenizer(dir), kVocab);
  ModelConfig c = small_config();
  c.rope_scaling = RopeScaling::parse("ntk:4", "test");
  Transformer m(c);
  m.init_weights(3);
  GgufModel g = round_trip(m, *tok, ggml_type::F32);
  EXPECT_TRUE(g.model->config().rope_scaling.is_none());
  ASSERT_EQ(g.model->rope_frequencies().size(), m.rope_frequencies().size());
  for (std::size_t i = 0; i < m.rope_frequencies().size(); i++)
    EXPECT_NEAR(g.model->rope_frequencies()[i], m.rope_frequencies()[i], 1e-6 * m.rope_frequencies()[i]) << i;
}

// ---- RoPE scalings through GGUF ----

// The tables a model's config gives at length T (what Transformer::update_rope computes).
RopeTables config_tables(const ModelConfig& c, int T) {
  return rope_tables(c.rope_scaling, c.head_dim(), c.rope_base, c.rope_train_length(), T);
}

// Every table of `b` within `rel` of `a`'s, at lengths around the trained and original lengths.
void expect_same_tables(const ModelConfig& a, const ModelConfig& b, double rel) {
  for (int T : {1, 16, 32, 33, 64, 65, 256}) {
    SCOPED_TRACE("T=" + std::to_string(T));
    const auto x = config_tables(a, T), y = config_tables(b, T);
    ASSERT_EQ(x.inv_freq.size(), y.inv_freq.size());
    for (std::size_t i = 0; i < x.inv_freq.size(); i++)
      EXPECT_NEAR(y.inv_freq[i], x.inv_freq[i], rel * x.inv_freq[i]) << "pair " << i;
    EXPECT_NEAR(y.attention_factor, x.attention_factor, rel * x.attention_factor);
  }
}

// Rebuilds the file of `w` without the metadata keys starting with `drop_prefix`, with `set` applied to the
// metadata, and with tensor `table` (if given) replaced by `table_values`.
std::string rebuilt(const GgufWriter& w, const std::string& drop_prefix, const std::vector<GgufKV>& set = {},
                    const std::string& table = "", const std::vector<float>& table_values = {}) {
  const GgufReader r = GgufReader::parse(w.serialize(), "src.gguf");
  GgufWriter out;
  for (const GgufKV& kv : w.metadata())
    if (drop_prefix.empty() || kv.key.rfind(drop_prefix, 0) != 0) out.set(kv.key, kv.value);
  for (const GgufKV& kv : set) out.set(kv.key, kv.value);
  for (const GgufTensorInfo& t : r.tensors()) {
    const auto x = t.name == table ? table_values : r.read_f32(t.name);
    out.add_tensor(t.name, t.shape_rowmajor, ggml_type::F32, x.data());
  }
  return out.serialize();
}

TEST(GgufConvert, RopeScalingsRoundTripWithTheirFrequencies) {
  TempDir dir;
  auto tok = load_llama2c_tokenizer(write_tiny_tokenizer(dir), kVocab);
  // head_dim 16 (8 pairs), block_size 64
  const std::string S = "1:1.25:1.5:2:2.5:3:3.5:4";
  const std::vector<std::string> specs = {
      "none", "linear:4", "linear:2,orig=32", "yarn:4", "yarn:4,orig=32,beta_fast=16,beta_slow=2",
      "yarn:4,attention_factor=1.3", "yarn:8,orig=16,mscale=1,mscale_all_dim=0.8", "ntk:4",
      "llama3:8,orig=16", "llama3:4,low=2,high=8", "llama3:4,low=2,high=2",
      "longrope:4,orig=32,short=" + S + ",long=" + S,
      "longrope:1,short=" + S + ",long=" + S + ",attention_factor=1.2"};
  for (const std::string& spec : specs) {
    SCOPED_TRACE(spec);
    ModelConfig c = small_config();
    c.rope_scaling = RopeScaling::parse(spec, "test");
    Transformer m(c);
    m.init_weights(3);
    const GgufWriter w = model_to_gguf(m, *tok);
    const GgufReader r = GgufReader::parse(w.serialize(), "rope.gguf");
    GgufModel g = model_from_gguf(r);
    const ModelConfig& b = g.model->config();
    expect_same_tables(c, b, 1e-6);
    const RopeScalingType t = c.rope_scaling.type;
    // exact where every parameter has its own key (factors 2, 4, 8 and the betas are exact in f32)
    if (t == RopeScalingType::none || t == RopeScalingType::linear || t == RopeScalingType::llama3 ||
        (t == RopeScalingType::yarn && c.rope_scaling.attention_factor == 0 && c.rope_scaling.mscale == 0)) {
      EXPECT_EQ(b.rope_scaling, c.rope_scaling) << b.rope_scaling.to_string();
      EXPECT_EQ(b.rope_base, c.rope_base);
    }
    // the written keys: llama.cpp's attn_factor is ours over ggml's 1 + 0.1 ln s (yarn) or ours (a table)
    const double ours = config_tables(c, 64).attention_factor;
    if (t == RopeScalingType::yarn && (c.rope_scaling.attention_factor != 0 || c.rope_scaling.mscale != 0)) {
      EXPECT_NEAR(r.get_f32("llama.rope.scaling.attn_factor"), ours / (1 + 0.1 * std::log(c.rope_scaling.factor)),
                  1e-7);
      EXPECT_EQ(b.rope_scaling.type, RopeScalingType::yarn);
    } else if (t == RopeScalingType::longrope && ours != 1.0) {
      EXPECT_NEAR(r.get_f32("llama.rope.scaling.attn_factor"), ours, 1e-7);
    } else {
      EXPECT_FALSE(r.has("llama.rope.scaling.attn_factor"));
    }
    // llama3 and longrope are llama.cpp's rope_freqs table: the divisor of each pair's angle
    EXPECT_EQ(r.has_tensor("rope_freqs.weight"), t == RopeScalingType::llama3 || t == RopeScalingType::longrope);
    if (r.has_tensor("rope_freqs.weight")) {
      const auto f = r.read_f32("rope_freqs.weight");
      const auto ref = rope_inv_freq(16, c.rope_base), scaled = config_tables(c, 64).inv_freq;
      ASSERT_EQ(f.size(), 8u);
      for (std::size_t i = 0; i < f.size(); i++) EXPECT_NEAR(f[i], ref[i] / scaled[i], 1e-6 * f[i]) << i;
      EXPECT_EQ(r.has("stretch.rope.scaling.type"), t == RopeScalingType::llama3);
      EXPECT_FALSE(r.has("llama.rope.scaling.type"));
    }
  }
}

TEST(GgufConvert, LlamaCppRopeFreqsImportAsLongropeWithTheSameFrequencies) {
  // llama.cpp's converter writes Llama 3.1's rope_freqs table without our keys: it imports as longrope with one
  // table for every length and attention factor 1, and gives llama3's frequencies
  TempDir dir;
  auto tok = load_llama2c_tokenizer(write_tiny_tokenizer(dir), kVocab);
  for (const std::string spec : {"llama3:8,orig=16", "llama3:4,low=2,high=8", "llama3:32,orig=32,low=1,high=4"}) {
    SCOPED_TRACE(spec);
    ModelConfig c = small_config();
    c.rope_scaling = RopeScaling::parse(spec, "test");
    Transformer m(c);
    m.init_weights(3);
    const GgufWriter w = model_to_gguf(m, *tok);
    GgufModel g = model_from_gguf(GgufReader::parse(rebuilt(w, "stretch."), "llama31.gguf"));
    const RopeScaling& s = g.model->config().rope_scaling;
    EXPECT_EQ(s.type, RopeScalingType::longrope);
    EXPECT_EQ(s.short_factor, s.long_factor);
    EXPECT_EQ(s.factor, 1.0);
    EXPECT_EQ(s.attention_factor, 0.0);
    expect_same_tables(c, g.model->config(), 2e-7);  // the f32 table's rounding: within about 1 ulp
    EXPECT_EQ(logits(*g.model).size(), logits(m).size());
  }
}

TEST(GgufConvert, RopeScalingRefusals) {
  TempDir dir;
  auto tok = load_llama2c_tokenizer(write_tiny_tokenizer(dir), kVocab);
  auto model_with = [&](const std::string& spec) {
    ModelConfig c = small_config();
    c.rope_scaling = RopeScaling::parse(spec, "test");
    return Transformer(c);
  };
  expect_error<ConfigError>([&] { model_to_gguf(model_with("yarn:4,truncate=0"), *tok); }, "truncate=0");
  expect_error<ConfigError>([&] { model_to_gguf(model_with("yarn-paper:4"), *tok); }, "yarn-paper");
  expect_error<ConfigError>(
      [&] { model_to_gguf(model_with("longrope:4,short=1:1:1:1:1:1:1:1,long=1:2:2:2:2:2:2:2"), *tok); },
      "longrope with short_factor != long_factor");

  const GgufWriter l3 = model_to_gguf(model_with("llama3:8,orig=16"), *tok);
  auto import = [](const std::string& bytes) { return model_from_gguf(GgufReader::parse(bytes, "x.gguf")); };
  expect_error<InputError>(
      [&] { import(rebuilt(l3, "", {{"stretch.rope.scaling.type", GgufValue::string("yarn")}})); },
      "stretch.rope.scaling.type is \"yarn\"");
  expect_error<InputError>(
      [&] { import(rebuilt(l3, "", {{"llama.rope.scaling.type", GgufValue::string("yarn")}})); },
      "rope_freqs.weight together with llama.rope.scaling.type \"yarn\"");
  expect_error<InputError>(
      [&] { import(rebuilt(l3, "", {{"stretch.rope.scaling.factor", GgufValue::f64(4.0)}})); },
      "but stretch.rope.scaling.* (llama3:4");
  expect_error<InputError>(
      [&] { import(rebuilt(l3, "", {{"llama.rope.scaling.attn_factor", GgufValue::f32(1.2f)}})); },
      "with llama3 scaling");
  expect_error<InputError>(
      [&] { import(rebuilt(l3, "", {}, "rope_freqs.weight", {1, 1, 1, 1, 1, 1, 0, 1})); }, "rope_freqs.weight");
  expect_error<InputError>(
      [&] { import(rebuilt(l3, "stretch.", {}, "rope_freqs.weight", {1, 1, 1, 1, 1, 1, -2, 1})); },
      "rope_freqs.weight");
  const GgufWriter lin = model_to_gguf(model_with("linear:4"), *tok);
  expect_error<InputError>(
      [&] { import(rebuilt(lin, "", {{"llama.rope.scaling.attn_factor", GgufValue::f32(1.2f)}})); },
      "llama.rope.scaling.attn_factor 1.2");
  expect_error<InputError>(
      [&] { import(rebuilt(lin, "", {{"stretch.rope.scaling.type", GgufValue::string("llama3")}})); },
      "rope_freqs.weight together with llama.rope.scaling.type \"linear\"");
}

// Rebuilds a writer from `w` with one change: the metadata key `drop_key` or tensor `drop_tensor` left out, or
// tensor `reshape` written with its two dimensions swapped.
std::string edited(const GgufWriter& w, const GgufReader& r, const std::string& drop_key,
                   const std::string& drop_tensor, const std::string& reshape) {
  GgufWriter out;
  for (const GgufKV& kv : w.metadata())
    if (kv.key != drop_key) out.set(kv.key, kv.value);
  for (const GgufTensorInfo& t : r.tensors()) {
    if (t.name == drop_tensor) continue;
    std::vector<std::int64_t> shape = t.shape_rowmajor;
    if (t.name == reshape) std::swap(shape[0], shape[1]);
    const auto x = r.read_f32(t.name);
    out.add_tensor(t.name, shape, ggml_type::F32, x.data());
  }
  return out.serialize();
}

TEST(GgufConvert, RejectsBadFilesNamingTheProblem) {
  TempDir dir;
  auto tok = load_llama2c_tokenizer(write_tiny_tokenizer(dir), kVocab);
  auto m = small_model();
  const GgufWriter w = model_to_gguf(*m, *tok);
  const GgufReader r = GgufReader::parse(w.serialize(), "ok.gguf");
  expect_error<InputError>(
      [&] { model_from_gguf(GgufReader::parse(edited(w, r, "", "blk.0.attn_q.weight", ""), "x.gguf")); },
      "blk.0.attn_q.weight");
  expect_error<InputError>(
      [&] { model_from_gguf(GgufReader::parse(edited(w, r, "", "", "blk.1.ffn_down.weight"), "x.gguf")); },
      "blk.1.ffn_down.weight");
  expect_error<InputError>(
      [&] { model_from_gguf(GgufReader::parse(edited(w, r, "llama.block_count", "", ""), "x.gguf")); },
      "llama.block_count");
}

// ---- GPT models as MPT ----

ModelConfig gpt_config(PositionMethod p, bool bias, bool tied, float embed_scale) {
  ModelConfig c;
  c.arch = Arch::gpt;
  c.vocab_size = 256;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_embd = 64;
  c.mlp_hidden = 128;
  c.block_size = 32;
  c.position = p;
  c.bias = bias;
  c.tie_embeddings = tied;
  c.embed_scale = embed_scale;
  c.norm_eps = 1e-5f;
  return c;
}

std::unique_ptr<Transformer> gpt_model(const ModelConfig& c) {
  auto m = std::make_unique<Transformer>(c);
  m->init_weights(5);
  Rng rng(13);  // non-trivial norms and biases, so a lost or misplaced one shows in the logits
  for (const ParamSpec& s : m->specs())
    if (s.kind == ParamKind::norm || s.kind == ParamKind::bias)
      for (std::size_t i = 0; i < s.numel(); i++) m->params().data()[s.offset + i] += 0.1f * rng.normal();
  return m;
}

std::vector<float> gpt_logits(Transformer& m, int T) {
  std::vector<std::int32_t> tokens;
  for (int t = 0; t < T; t++) tokens.push_back((t * 53 + 7) % m.config().vocab_size);
  ForwardOptions fo;
  fo.keep_logits = true;
  m.forward(tokens.data(), nullptr, nullptr, 1, T, fo);
  const float* p = m.logits();
  return std::vector<float>(p, p + static_cast<std::size_t>(T) * static_cast<std::size_t>(m.config().vocab_size));
}

// llama.cpp's MPT reads mpt.attention.max_alibi_bias and ggml derives the slopes from it by our formula: any
// maximum bias goes through and comes back.
TEST(GgufConvert, AlibiMaxBiasRoundTrips) {
  auto byte = make_byte_tokenizer();
  ModelConfig c = gpt_config(PositionMethod::alibi, true, true, 1.0f);
  c.alibi_max_bias = 12.0;
  auto m = gpt_model(c);
  const GgufReader r = GgufReader::parse(model_to_gguf(*m, *byte).serialize(), "mpt.gguf");
  EXPECT_EQ(r.get_float("mpt.attention.max_alibi_bias"), 12.0);
  GgufModel back = model_from_gguf(r);
  EXPECT_EQ(back.model->config().alibi_max_bias, 12.0);
  EXPECT_EQ(gpt_logits(*back.model, 20), gpt_logits(*m, 20));
}

TEST(GgufConvert, RefusesTheExactGeluTheEmbeddingNormAndQkvBiasesByName) {
  auto byte = make_byte_tokenizer();
  ModelConfig c = gpt_config(PositionMethod::alibi, true, true, 1.0f);
  c.activation = Activation::gelu;
  EXPECT_THROW(model_to_gguf(*gpt_model(c), *byte), ConfigError);
  c.activation = Activation::gelu_tanh;
  c.embed_norm = true;
  try {
    model_to_gguf(*gpt_model(c), *byte);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("embed_norm"), std::string::npos) << e.what();
  }
}

TEST(GgufConvert, GptAlibiIsMptWithEveryBiasBitIdentical) {
  auto byte = make_byte_tokenizer();
  auto m = gpt_model(gpt_config(PositionMethod::alibi, true, true, 1.0f));
  const GgufWriter w = model_to_gguf(*m, *byte);
  const GgufReader r = GgufReader::parse(w.serialize(), "mpt.gguf");
  EXPECT_EQ(r.get_string("general.architecture"), "mpt");
  EXPECT_EQ(r.get_float("mpt.attention.max_alibi_bias"), 8.0);
  EXPECT_EQ(r.get_uint("mpt.context_length"), 32u);
  EXPECT_EQ(r.get_uint("mpt.embedding_length"), 64u);
  EXPECT_EQ(r.get_uint("mpt.block_count"), 2u);
  EXPECT_EQ(r.get_uint("mpt.feed_forward_length"), 128u);
  EXPECT_EQ(r.get_uint("mpt.attention.head_count"), 4u);
  EXPECT_FLOAT_EQ(static_cast<float>(r.get_float("mpt.attention.layer_norm_epsilon")), 1e-5f);
  EXPECT_FALSE(r.has_tensor("output.weight"));  // tied
  EXPECT_FALSE(r.has_tensor("position_embd.weight"));
  EXPECT_EQ(r.tensor("blk.1.attn_qkv.weight").shape_rowmajor, (std::vector<std::int64_t>{192, 64}));
  EXPECT_EQ(r.tensor("blk.1.attn_qkv.bias").shape_rowmajor, (std::vector<std::int64_t>{192}));
  EXPECT_EQ(r.tensor("blk.0.ffn_up.weight").shape_rowmajor, (std::vector<std::int64_t>{128, 64}));
  EXPECT_EQ(r.tensor("blk.0.ffn_down.weight").shape_rowmajor, (std::vector<std::int64_t>{64, 128}));
  for (const char* b : {"blk.0.attn_norm.bias", "blk.0.attn_output.bias", "blk.0.ffn_norm.bias", "blk.0.ffn_up.bias",
                        "blk.0.ffn_down.bias", "output_norm.bias"})
    EXPECT_TRUE(r.has_tensor(b)) << b;
  // the tensors hold our parameters, in our layout
  ParamView v = bind_param_view(m->config(), m->specs(), m->params().data());
  const auto qkv = r.read_f32("blk.1.attn_qkv.weight");
  EXPECT_EQ(0, std::memcmp(qkv.data(), v.layers[1].qkv_w, qkv.size() * sizeof(float)));
  const auto fcb = r.read_f32("blk.0.ffn_up.bias");
  EXPECT_EQ(0, std::memcmp(fcb.data(), v.layers[0].fc_b, fcb.size() * sizeof(float)));

  GgufModel g = model_from_gguf(r);
  EXPECT_EQ(g.model->config().to_json(), m->config().to_json());
  ASSERT_EQ(g.model->params().size(), m->params().size());
  EXPECT_EQ(0, std::memcmp(g.model->params().data(), m->params().data(), m->params().size() * sizeof(float)));
  EXPECT_EQ(gpt_logits(*g.model, 48), gpt_logits(*m, 48));  // past block_size too: ALiBi
}

TEST(GgufConvert, GptWithoutBiasesAndWithTablesMapsExactly) {
  auto byte = make_byte_tokenizer();
  for (PositionMethod p : {PositionMethod::none, PositionMethod::learned}) {
    auto m = gpt_model(gpt_config(p, false, false, 1.0f));
    const GgufReader r = GgufReader::parse(model_to_gguf(*m, *byte).serialize(), "mpt.gguf");
    EXPECT_FALSE(r.has("mpt.attention.max_alibi_bias"));
    EXPECT_FALSE(r.has_tensor("blk.0.attn_qkv.bias"));
    EXPECT_FALSE(r.has_tensor("output_norm.bias"));
    EXPECT_TRUE(r.has_tensor("output.weight"));
    EXPECT_EQ(r.has_tensor("position_embd.weight"), p == PositionMethod::learned);
    GgufModel g = model_from_gguf(r);
    EXPECT_EQ(g.model->config().to_json(), m->config().to_json()) << to_string(p);
    EXPECT_EQ(0, std::memcmp(g.model->params().data(), m->params().data(), m->params().size() * sizeof(float)));
    EXPECT_EQ(gpt_logits(*g.model, 32), gpt_logits(*m, 32));
  }
}

TEST(GgufConvert, SinusoidalAndEmbedScaleFoldIntoTheTensorsWithIdenticalLogits) {
  auto byte = make_byte_tokenizer();
  // sinusoidal -> a position table of block_size rows (imported as learned); embed_scale 8 folded into token_embd
  // with the output matrix written apart (imported untied, embed_scale 1)
  auto m = gpt_model(gpt_config(PositionMethod::sinusoidal, true, true, 8.0f));
  const GgufReader r = GgufReader::parse(model_to_gguf(*m, *byte).serialize(), "mpt.gguf");
  EXPECT_EQ(r.tensor("position_embd.weight").shape_rowmajor, (std::vector<std::int64_t>{32, 64}));
  const auto pe = r.read_f32("position_embd.weight");
  EXPECT_FLOAT_EQ(pe[0 * 64 + 0], 0.0f);   // sin(0)
  EXPECT_FLOAT_EQ(pe[0 * 64 + 1], 1.0f);   // cos(0) (pairs interleaved: sin, cos)
  EXPECT_NEAR(pe[5 * 64 + 0], std::sin(5.0), 1e-6);
  ParamView v = bind_param_view(m->config(), m->specs(), m->params().data());
  const auto emb = r.read_f32("token_embd.weight"), out = r.read_f32("output.weight");
  EXPECT_EQ(emb[70], 8.0f * v.wte[70]);
  EXPECT_EQ(out[70], v.wte[70]);
  GgufModel g = model_from_gguf(r);
  const ModelConfig& c = g.model->config();
  EXPECT_EQ(c.position, PositionMethod::learned);
  EXPECT_FALSE(c.tie_embeddings);
  EXPECT_EQ(c.embed_scale, 1.0f);
  const auto a = gpt_logits(*g.model, 32), b = gpt_logits(*m, 32);
  ASSERT_EQ(a.size(), b.size());
  double d = 0;
  for (std::size_t i = 0; i < a.size(); i++) d = std::max(d, std::fabs(static_cast<double>(a[i]) - b[i]));
  EXPECT_LT(d, 1e-5) << "max logit difference";  // sinusoids: table values against ours recomputed
}

TEST(GgufConvert, ByteAndGpt2VocabulariesAreGpt2StyleTokenizers) {
  auto byte = make_byte_tokenizer();
  auto m = gpt_model(gpt_config(PositionMethod::alibi, true, true, 1.0f));
  const GgufReader r = GgufReader::parse(model_to_gguf(*m, *byte).serialize(), "mpt.gguf");
  EXPECT_EQ(r.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(r.get_string("tokenizer.ggml.pre"), "gpt-2");
  const auto tokens = r.get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 256u);
  EXPECT_EQ(tokens['a'], "a");
  EXPECT_EQ(tokens[' '], "\xC4\xA0");  // U+0120 'Ġ', GPT-2's alphabet for a space
  EXPECT_EQ(tokens['\n'], "\xC4\x8A");
  EXPECT_TRUE(r.get_string_array("tokenizer.ggml.merges").empty());
  EXPECT_FALSE(r.has("tokenizer.ggml.bos_token_id"));
  GgufModel g = model_from_gguf(r);
  EXPECT_EQ(g.tokenizer_model, "gpt2");
  EXPECT_TRUE(is_byte_vocab(BpeVocab{g.tokens, g.merges}));

  // a small GPT-2-style vocabulary: the 256 bytes, three merges, <|endoftext|> last
  TempDir dir;
  BpeVocab bv = *bpe_vocab(*byte);
  bv.tokens.push_back("\xC4\xA0t");  // "Ġt"
  bv.tokens.push_back("he");
  bv.tokens.push_back("\xC4\xA0the");
  bv.tokens.push_back("<|endoftext|>");
  bv.merges = {"\xC4\xA0 t", "h e", "\xC4\xA0t he"};
  write_gpt2_files(dir / "encoder.json", dir / "vocab.bpe", bv, "test");
  auto gpt2 = load_gpt2_tokenizer(dir / "encoder.json", dir / "vocab.bpe");
  ASSERT_EQ(gpt2->vocab_size(), 260);
  EXPECT_EQ(gpt2->encode(" the"), (std::vector<std::int32_t>{258}));
  ModelConfig c = gpt_config(PositionMethod::alibi, true, true, 1.0f);
  c.vocab_size = 260;
  auto m2 = gpt_model(c);
  const GgufReader r2 = GgufReader::parse(model_to_gguf(*m2, *gpt2).serialize(), "mpt.gguf");
  EXPECT_EQ(r2.get_string_array("tokenizer.ggml.tokens"), bv.tokens);
  EXPECT_EQ(r2.get_string_array("tokenizer.ggml.merges"), bv.merges);
  EXPECT_EQ(r2.get_uint("tokenizer.ggml.eos_token_id"), 259u);
  EXPECT_EQ(r2.get_i32_array("tokenizer.ggml.token_type")[259], 3);  // control
  EXPECT_EQ(r2.get_i32_array("tokenizer.ggml.token_type")[258], 1);
  // and written back as files, the same tokenizer
  GgufModel g2 = model_from_gguf(r2);
  TempDir back;
  write_gpt2_files(back / "encoder.json", back / "vocab.bpe", BpeVocab{g2.tokens, g2.merges}, "test");
  auto again = load_gpt2_tokenizer(back / "encoder.json", back / "vocab.bpe");
  const std::string text = "the theme: then the end.\n the";
  EXPECT_EQ(again->encode(text), gpt2->encode(text));
  // a vocabulary that is not GPT-2's is refused by name before anything is written
  BpeVocab bad = bv;
  bad.merges.push_back("x yz");
  expect_error<InputError>([&] { check_gpt2_vocab(bad, "v.gguf"); }, "merge 3");
  bad = bv;
  bad.tokens.erase(bad.tokens.begin() + 'q');
  expect_error<InputError>([&] { check_gpt2_vocab(bad, "v.gguf"); }, "no token for byte 113");
}

TEST(GgufConvert, Gpt2BpeFilesSurviveTheRoundTripThroughGguf) {
  const auto bpe = test::shared_data() / "gpt2-bpe";
  if (!std::filesystem::exists(bpe / "encoder.json")) GTEST_SKIP() << "needs ../shared/data/gpt2-bpe (absent)";
  auto gpt2 = load_gpt2_tokenizer(bpe / "encoder.json", bpe / "vocab.bpe");
  ModelConfig c = gpt_config(PositionMethod::alibi, false, true, 1.0f);
  c.vocab_size = gpt2->vocab_size();
  c.n_layer = 1;
  c.n_embd = 16;
  c.n_head = 2;
  c.mlp_hidden = 32;
  Transformer m(c);
  m.init_weights(1);
  GgufModel g = model_from_gguf(GgufReader::parse(model_to_gguf(m, *gpt2).serialize(), "gpt2.gguf"));
  ASSERT_EQ(g.tokens.size(), 50257u);
  EXPECT_EQ(g.tokens[50256], "<|endoftext|>");
  EXPECT_EQ(g.merges.size(), 50000u);
  EXPECT_EQ(g.merges[0], "\xC4\xA0 t");  // vocab.bpe's first merge
  EXPECT_EQ(g.tokenizer_pre, "gpt-2");
  EXPECT_EQ(g.eos, 50256);
  TempDir dir;
  write_gpt2_files(dir / "encoder.json", dir / "vocab.bpe", BpeVocab{g.tokens, g.merges}, "gpt2.gguf");
  auto back = load_gpt2_tokenizer(dir / "encoder.json", dir / "vocab.bpe");
  EXPECT_EQ(back->vocab_size(), 50257);
  const std::string text =
      " = Robert Boulter = \n\n Robert Boulter is an English film , television and theatre actor . He had a "
      "guest @-@ starring role on the television series The Bill in 2000 . Caf\xC3\xA9s, na\xC3\xAFve 123,456 "
      "don't \xF0\x9F\x98\x80<|endoftext|>";
  EXPECT_EQ(back->encode(text), gpt2->encode(text));
  EXPECT_EQ(back->decode(back->encode(text)), text);
}

TEST(GgufConvert, RejectsMptFeaturesItCannotCompute) {
  auto byte = make_byte_tokenizer();
  auto m = gpt_model(gpt_config(PositionMethod::alibi, true, true, 1.0f));
  const GgufWriter w = model_to_gguf(*m, *byte);
  auto with = [&](const std::string& k, GgufValue v) {
    GgufWriter out;
    for (const GgufKV& kv : w.metadata()) out.set(kv.key, kv.key == k ? v : kv.value);
    out.set(k, v);
    const GgufReader r = GgufReader::parse(w.serialize(), "ok.gguf");
    for (const GgufTensorInfo& t : r.tensors()) out.add_tensor(t.name, t.shape_rowmajor, ggml_type::F32, r.read_f32(t.name).data());
    return GgufReader::parse(out.serialize(), "x.gguf");
  };
  expect_error<InputError>([&] { model_from_gguf(with("mpt.attention.max_alibi_bias", GgufValue::f32(-4.0f))); },
                           "max_alibi_bias");
  expect_error<InputError>([&] { model_from_gguf(with("mpt.attention.clamp_kqv", GgufValue::f32(8.0f))); },
                           "clamp_kqv");
  expect_error<InputError>([&] { model_from_gguf(with("general.architecture", GgufValue::string("falcon"))); },
                           "falcon");
  expect_error<InputError>([&] { model_from_gguf(with("mpt.attention.head_count_kv", GgufValue::u32(2))); },
                           "head_count_kv");
  // refused at once, not after 2^31 rounds of per-layer tensor look-ups (a hang found by fuzz/gguf)
  expect_error<InputError>([&] { model_from_gguf(with("mpt.block_count", GgufValue::u32(2000000000))); },
                           "mpt.block_count is 2000000000");
}

// Counts in the metadata that the tensors do not back are refused before the model is allocated (found by
// fuzz/gguf: a 16 KB file asking for 1024 blocks of a 262144-wide MLP made the import allocate 24 GB).
TEST(GgufConvert, RefusesMetadataAskingForMoreWeightsThanTheFileHolds) {
  auto byte = make_byte_tokenizer();
  auto m = gpt_model(gpt_config(PositionMethod::alibi, true, true, 1.0f));
  const GgufReader r = GgufReader::parse(model_to_gguf(*m, *byte).serialize(), "ok.gguf");
  GgufWriter out;
  for (const GgufKV& kv : r.metadata())
    out.set(kv.key, kv.key == "mpt.block_count"         ? GgufValue::u32(1024)
                    : kv.key == "mpt.feed_forward_length" ? GgufValue::u32(262144)
                                                          : kv.value);
  for (const GgufTensorInfo& t : r.tensors()) out.add_tensor(t.name, t.shape_rowmajor, ggml_type::F32, r.read_f32(t.name).data());
  expect_error<InputError>([&] { model_from_gguf(GgufReader::parse(out.serialize(), "big.gguf")); },
                           "but the file's tensors hold only");
}

}  // namespace
}  // namespace stretch
