// Fine-tuning-free context extension in the model and the decoder:
//   Self-Extend and (leaky) ReRoPE: logits of the full forward, of the decoder's prefill and of its token-by-token
//     decode match a float64 PyTorch evaluation of the papers' formulas (tools/make_extension_fixture.py); a window
//     covering the sequence (and Self-Extend's G = 1) is plain RoPE; training refuses them.
//   Attention sinks (StreamingLLM): for one-layer models, every logit of a decode that slides past its cache
//     equals a full forward over [the sink tokens + the window] at positions 0 .. S-1, for rope (with and without
//     Self-Extend), alibi, t5 and none; sinusoidal / learned models and bad values are refused naming --keep.
//   ALiBi interpolation: slopes scaled by L / L' is plain ALiBi at positions scaled by L' / L, in the full
//     forward and the decoder.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/safetensors.hpp"
#include "model/decoder.hpp"
#include "position/alibi.hpp"
#include "test_util.hpp"

namespace stretch {
namespace {

const std::filesystem::path kFixture =
    std::filesystem::path(STRETCH_SOURCE_DIR) / "tests/fixtures/extension/llama_extension.safetensors";

double rel_err(const float* a, const double* b, std::size_t n) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < n; i++) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

// max |a - b| / max(1, max |b|)
double max_err(const float* a, const float* b, std::size_t n) {
  double e = 0, scale = 1;
  for (std::size_t i = 0; i < n; i++) {
    e = std::max(e, static_cast<double>(std::abs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::abs(b[i])));
  }
  return e / scale;
}

struct FixtureModel {
  SafetensorsReader f;
  std::unique_ptr<Transformer> model;
  std::vector<std::int32_t> tokens;
  nlohmann::json settings;
  explicit FixtureModel(const std::filesystem::path& p) : f(SafetensorsReader::open(p)) {
    auto cj = nlohmann::json::parse(f.metadata().at("config"));
    ModelConfig c;
    c.arch = Arch::llama;
    c.bias = false;
    c.vocab_size = cj["vocab_size"];
    c.n_layer = cj["n_layer"];
    c.n_head = cj["n_head"];
    c.n_kv_head = cj["n_kv_head"];
    c.n_embd = cj["n_embd"];
    c.mlp_hidden = cj["mlp_hidden"];
    c.block_size = cj["block_size"];
    c.position = PositionMethod::rope;
    c.tie_embeddings = cj["tie_embeddings"];
    c.rope_base = cj["rope_base"];
    c.norm_eps = cj["norm_eps"];
    model = std::make_unique<Transformer>(c);
    for (auto& s : model->specs()) f.read_into("param." + s.name, s.shape, model->params().data() + s.offset);
    tokens = f.read_i32("tokens");
    settings = nlohmann::json::parse(f.metadata().at("settings"));
  }
};

TEST(Extension, SelfExtendAndReRopeLogitsMatchTheFloat64Reference) {
  ASSERT_TRUE(std::filesystem::exists(kFixture)) << "run python3 tools/make_extension_fixture.py";
  FixtureModel fx(kFixture);
  const int T = static_cast<int>(fx.tokens.size()), V = fx.model->config().vocab_size;
  ForwardOptions fo;
  fo.keep_logits = true;
  int checked = 0;
  for (const char* name : {"plain", "self_extend_4_8", "self_extend_3_5", "rerope_8", "leaky_rerope_8_4"}) {
    PositionExtension e;
    if (fx.settings.contains(name)) e = PositionExtension::from_json(fx.settings[name], name);
    fx.model->set_extension(e);
    const auto ref = fx.f.read_f64(std::string("logits.") + name);
    ASSERT_EQ(ref.size(), static_cast<std::size_t>(T) * V);
    fx.model->forward(fx.tokens.data(), nullptr, nullptr, 1, T, fo);
    EXPECT_LT(rel_err(fx.model->logits(), ref.data(), ref.size()), 1e-5) << name << ": full forward";
    // the decoder: prefill (the tiled kernel's two score sets) and one token at a time (keys rotated per query)
    Decoder whole(*fx.model, T, false);
    const float* l = whole.append(fx.tokens.data(), T, true);
    EXPECT_LT(rel_err(l, ref.data(), ref.size()), 1e-5) << name << ": decoder prefill";
    Decoder d(*fx.model, T, false);
    std::vector<float> rows(static_cast<std::size_t>(T) * V);
    const float* p = d.append(fx.tokens.data(), 5, true);
    std::copy(p, p + 5 * V, rows.begin());
    for (int t = 5; t < T; t++) {
      p = d.append(&fx.tokens[t], 1);
      std::copy(p, p + V, rows.begin() + static_cast<std::ptrdiff_t>(t) * V);
    }
    EXPECT_LT(rel_err(rows.data(), ref.data(), ref.size()), 1e-5) << name << ": decoder token by token";
    checked++;
  }
  EXPECT_EQ(checked, 5);
  // the settings do change the logits (the comparison above can tell them apart)
  const auto a = fx.f.read_f64("logits.plain"), b = fx.f.read_f64("logits.self_extend_4_8");
  double diff = 0;
  for (std::size_t i = 0; i < a.size(); i++) diff = std::max(diff, std::abs(a[i] - b[i]));
  EXPECT_GT(diff, 0.1);
}

// ALiBi and T5: the bias at the remapped relative position of far pairs (position/extension.hpp), against a
// float64 evaluation of the formula over the whole T x T matrix (tools/make_extension_fixture.py).
TEST(Extension, AlibiAndT5TakeSelfExtendAndReRopeDistancesAsTheFloat64Reference) {
  const auto path = kFixture.parent_path() / "gpt_extension.safetensors";
  ASSERT_TRUE(std::filesystem::exists(path)) << "run python3 tools/make_extension_fixture.py";
  auto f = SafetensorsReader::open(path);
  const auto tokens = f.read_i32("tokens");
  const auto settings = nlohmann::json::parse(f.metadata().at("settings"));
  const int T = static_cast<int>(tokens.size());
  int checked = 0;
  for (const std::string method : {"alibi", "t5"}) {
    const auto cj = nlohmann::json::parse(f.metadata().at("config." + method));
    ModelConfig c;
    c.vocab_size = cj["vocab_size"];
    c.n_layer = cj["n_layer"];
    c.n_head = cj["n_head"];
    c.n_embd = cj["n_embd"];
    c.mlp_hidden = cj["mlp_hidden"];
    c.block_size = cj["block_size"];
    c.position = parse_position_method(cj["position"].get<std::string>(), "fixture");
    c.bias = cj["bias"];
    c.tie_embeddings = cj["tie_embeddings"];
    Transformer m(c);
    for (auto& s : m.specs()) f.read_into(method + ".param." + s.name, s.shape, m.params().data() + s.offset);
    const int V = c.vocab_size;
    ForwardOptions fo;
    fo.keep_logits = true;
    for (const char* name : {"plain", "self_extend_4_8", "self_extend_3_5", "rerope_8", "leaky_rerope_8_4"}) {
      PositionExtension e;
      if (settings.contains(name)) e = PositionExtension::from_json(settings[name], name);
      m.set_extension(e);
      const auto ref = f.read_f64(method + ".logits." + name);
      ASSERT_EQ(ref.size(), static_cast<std::size_t>(T) * V);
      m.forward(tokens.data(), nullptr, nullptr, 1, T, fo);
      EXPECT_LT(rel_err(m.logits(), ref.data(), ref.size()), 1e-5) << method << " " << name << ": full forward";
      Decoder whole(m, T, false);
      EXPECT_LT(rel_err(whole.append(tokens.data(), T, true), ref.data(), ref.size()), 1e-5)
          << method << " " << name << ": decoder prefill";
      Decoder d(m, T, false);
      std::vector<float> rows(static_cast<std::size_t>(T) * V);
      const float* p = d.append(tokens.data(), 5, true);
      std::copy(p, p + 5 * V, rows.begin());
      for (int t = 5; t < T; t++) {
        p = d.append(&tokens[t], 1);
        std::copy(p, p + V, rows.begin() + static_cast<std::ptrdiff_t>(t) * V);
      }
      EXPECT_LT(rel_err(rows.data(), ref.data(), ref.size()), 1e-5) << method << " " << name << ": token by token";
      checked++;
    }
    // a window covering the sequence (or G = 1) is the plain method (to float rounding: the kernel's bias sum is
    // contracted into FMAs differently once the bias has a branch)
    m.set_extension(PositionExtension{});
    m.forward(tokens.data(), nullptr, nullptr, 1, T, fo);
    const std::vector<float> plain(m.logits(), m.logits() + static_cast<std::size_t>(T) * V);
    for (const char* spec : {"se:4,40", "se:1,3", "rr:40", "rr:45,8"}) {
      const std::string sp(spec);
      m.set_extension(sp[0] == 's' ? PositionExtension::parse_self_extend(sp.substr(3), "test")
                                   : PositionExtension::parse_rerope(sp.substr(3), "test"));
      m.forward(tokens.data(), nullptr, nullptr, 1, T, fo);
      EXPECT_LT(max_err(m.logits(), plain.data(), plain.size()), 1e-6) << method << " " << spec;
    }
    // the settings change the logits enough for the comparison to tell them apart
    const auto a = f.read_f64(method + ".logits.plain"), b = f.read_f64(method + ".logits.rerope_8");
    double diff = 0;
    for (std::size_t i = 0; i < a.size(); i++) diff = std::max(diff, std::abs(a[i] - b[i]));
    EXPECT_GT(diff, 0.05) << method;
  }
  EXPECT_EQ(checked, 10);
}

// The integer distance the bias methods use equals relative() (the far positions' difference) everywhere.
TEST(Extension, TheIntegerDistanceEqualsTheFarPositionsDifference) {
  for (const char* spec : {"se:4,8", "se:3,5", "se:1,3", "se:7,100", "rr:8", "rr:8,4", "rr:1,2.5"}) {
    const std::string s(spec);
    const PositionExtension e = s[0] == 's' ? PositionExtension::parse_self_extend(s.substr(3), "test")
                                            : PositionExtension::parse_rerope(s.substr(3), "test");
    for (int i = 0; i < 300; i++)
      for (int j = 0; j <= i; j++)
        ASSERT_NEAR(e.distance(i, j), e.relative(i, j), 1e-9) << spec << " " << i << "," << j;
  }
}

ModelConfig small(PositionMethod p, int layers = 2) {
  ModelConfig c;
  c.arch = Arch::llama;
  c.bias = false;
  c.vocab_size = 50;
  c.n_layer = layers;
  c.n_head = 4;
  c.n_kv_head = 2;
  c.n_embd = 32;
  c.mlp_hidden = 40;
  c.block_size = 64;
  c.position = p;
  return c;
}

std::unique_ptr<Transformer> make(const ModelConfig& c, std::uint64_t seed = 21) {
  auto m = std::make_unique<Transformer>(c);
  m->init_weights(seed);
  for (auto& s : m->specs())  // larger than GPT-2's init so attention is far from uniform
    if (s.kind != ParamKind::norm)
      for (std::size_t i = 0; i < s.numel(); i++) m->params()[s.offset + i] *= 5.0f;
  return m;
}

std::vector<std::int32_t> sequence(int n) {
  std::vector<std::int32_t> t(n);
  for (int i = 0; i < n; i++) t[i] = (i * 17 + 3) % 50;
  return t;
}

TEST(Extension, AWindowCoveringTheSequenceIsPlainRope) {
  const int T = 40, V = 50;
  auto m = make(small(PositionMethod::rope));
  auto tok = sequence(T);
  ForwardOptions fo;
  fo.keep_logits = true;
  m->forward(tok.data(), nullptr, nullptr, 1, T, fo);
  const std::vector<float> plain(m->logits(), m->logits() + static_cast<std::size_t>(T) * V);
  for (const char* spec : {"se:4,40", "se:4,63", "se:1,3", "rr:40", "rr:50,8"}) {
    const std::string s(spec);
    m->set_extension(s[0] == 's' ? PositionExtension::parse_self_extend(s.substr(3), "test")
                                 : PositionExtension::parse_rerope(s.substr(3), "test"));
    m->forward(tok.data(), nullptr, nullptr, 1, T, fo);
    EXPECT_LT(max_err(m->logits(), plain.data(), plain.size()), 1e-6) << spec;  // G = 1 or w >= T: plain RoPE
    Decoder d(*m, T, false);
    for (int t = 0; t < T; t++) {
      const float* l = d.append(&tok[t], 1);
      ASSERT_LT(max_err(l, plain.data() + static_cast<std::size_t>(t) * V, V), 1e-5) << spec << " token " << t;
    }
  }
  // and the same window below the length changes the result
  m->set_extension(PositionExtension::parse_self_extend("4,8", "test"));
  m->forward(tok.data(), nullptr, nullptr, 1, T, fo);
  EXPECT_GT(max_err(m->logits(), plain.data(), plain.size()), 1e-3);
}

TEST(Extension, TrainingAndOtherMethodsRefuseIt) {
  auto m = make(small(PositionMethod::rope));
  m->set_extension(PositionExtension::parse_rerope("8", "test"));
  auto tok = sequence(16);
  ForwardOptions fo;
  fo.need_grad = true;
  EXPECT_THROW(m->forward(tok.data(), tok.data(), nullptr, 1, 16, fo), ConfigError);
  // rope, alibi and t5 models only (absolute positions and none have no relative position to remap); the window
  // below the trained length (64)
  for (PositionMethod p : {PositionMethod::sinusoidal, PositionMethod::learned, PositionMethod::none}) {
    ModelConfig c = small(PositionMethod::alibi);
    c.arch = Arch::gpt;
    c.bias = true;
    c.n_kv_head = 0;
    c.position = p;
    auto g = make(c);
    EXPECT_THROW(g->set_extension(PositionExtension::parse_rerope("8", "test")), ConfigError) << to_string(p);
  }
  auto a = make(small(PositionMethod::alibi));
  a->set_extension(PositionExtension::parse_rerope("8", "test"));
  EXPECT_THROW(a->forward(tok.data(), tok.data(), nullptr, 1, 16, fo), ConfigError);  // training refuses it too
  EXPECT_THROW(a->set_extension(PositionExtension::parse_rerope("64", "test")), ConfigError);
  a->set_extension(PositionExtension{});
  EXPECT_THROW(m->set_extension(PositionExtension::parse_self_extend("4,64", "test")), ConfigError);
  EXPECT_THROW(m->set_alibi_interp(128), ConfigError);  // ALiBi interpolation on a rope model
  EXPECT_THROW(a->set_alibi_interp(32), ConfigError);   // a target below the trained length
}

// The sequence a sliding cache with `keep` sinks and S slots holds when token a is the newest: the sinks, then
// the latest S - keep tokens (all tokens while a < S).
std::vector<std::int32_t> cache_content(const std::vector<std::int32_t>& tok, int a, int keep, int S) {
  if (a < S) return {tok.begin(), tok.begin() + a + 1};
  std::vector<std::int32_t> c(tok.begin(), tok.begin() + keep);
  c.insert(c.end(), tok.begin() + (a - (S - keep) + 1), tok.begin() + a + 1);
  return c;
}

TEST(Extension, SinksDecodeEqualsFullAttentionOverSinksAndWindow) {
  const int V = 50, n = 60;
  struct K {
    PositionMethod p;
    const char* ext;
  };
  for (const K& k : {K{PositionMethod::rope, ""}, K{PositionMethod::rope, "4,6"}, K{PositionMethod::alibi, ""},
                     K{PositionMethod::t5, ""}, K{PositionMethod::none, ""}}) {
    for (auto [keep, S] : {std::pair{4, 16}, std::pair{1, 9}, std::pair{0, 12}}) {
      ModelConfig c = small(k.p, 1);  // one layer: a key is its token's projection alone (see decoder.hpp)
      if (*k.ext) c.extension = PositionExtension::parse_self_extend(k.ext, "test");
      auto m = make(c);
      auto ref = make(c);
      auto tok = sequence(n);
      Decoder d(*m, S, true, keep);
      EXPECT_EQ(d.sinks(), keep);
      ForwardOptions fo;
      fo.keep_logits = true;
      for (int a = 0; a < n; a++) {
        const float* l = d.append(&tok[a], 1);
        const auto content = cache_content(tok, a, keep, S);
        const int T = static_cast<int>(content.size());
        ref->forward(content.data(), nullptr, nullptr, 1, T, fo);  // positions 0 .. T-1
        ASSERT_LT(max_err(l, ref->logits() + static_cast<std::size_t>(T - 1) * V, V), 1e-5)
            << to_string(k.p) << " " << k.ext << " keep " << keep << " ctx " << S << " token " << a;
      }
      EXPECT_EQ(d.length(), n);
      EXPECT_EQ(d.cache_bytes(), 2u * S * c.kv_dim() * sizeof(float));  // bounded: S slots whatever n is
    }
  }
}

TEST(Extension, SinksPrefillThenSlideAndBadKeepValues) {
  // a prompt longer than the cache: prefilled up to the cache, then slid one token at a time
  const int V = 50, S = 16, keep = 4, n = 40;
  auto m = make(small(PositionMethod::rope, 1));
  auto ref = make(small(PositionMethod::rope, 1));
  auto tok = sequence(n);
  Decoder d(*m, S, true, keep);
  const float* l = d.append(tok.data(), n);
  const auto content = cache_content(tok, n - 1, keep, S);
  ForwardOptions fo;
  fo.keep_logits = true;
  ref->forward(content.data(), nullptr, nullptr, 1, S, fo);
  EXPECT_LT(max_err(l, ref->logits() + static_cast<std::size_t>(S - 1) * V, V), 1e-5);

  // the decoder names its argument `keep` (the command line renders it as --keep: GenerateCli / PasskeyCli tests)
  auto expect_keep_error = [](auto&& fn) {
    try {
      fn();
      ADD_FAILURE() << "expected ConfigError naming keep";
    } catch (const ConfigError& e) {
      EXPECT_EQ(std::string(e.what()).rfind("`keep`: ", 0), 0u) << e.what();
    }
  };
  expect_keep_error([&] { Decoder(*m, 8, true, 8); });   // as many sinks as slots
  expect_keep_error([&] { Decoder(*m, 8, false, 2); });  // sinks without sliding
  auto learned = make(small(PositionMethod::learned));
  expect_keep_error([&] { Decoder(*learned, 8, true, 2); });
  auto sinus = make(small(PositionMethod::sinusoidal));
  expect_keep_error([&] { Decoder(*sinus, 8, true, 2); });
  ModelConfig w = small(PositionMethod::alibi);
  w.attn_window = 4;
  auto windowed = make(w);
  expect_keep_error([&] { Decoder(*windowed, 8, true, 2); });
  EXPECT_THROW(Decoder(*m, 8, true), ConfigError);  // rope still cannot slide without sinks
  // a caller that passes FieldNames gets its own names instead (as a config file's loader does)
  const FieldNames flags = [](const std::string& f) -> std::string {
    return f == "slide" ? "--no-slide" : f == "attn_window" ? "--attn-window" : "--" + f;
  };
  test::expect_message<ConfigError>([&] { Decoder(*m, 8, false, 2, flags); },
                                    {"--keep: attention sinks are kept while the cache slides", "(--no-slide)"});
  test::expect_message<ConfigError>([&] { Decoder(*windowed, 8, true, 2, flags); },
                                    {"--keep: ", "drop --attn-window 4"});
  test::expect_message<ConfigError>([&] { Decoder(*m, 0, true, -1, flags); }, {"--ctx: expected"});
}

TEST(Extension, AlibiInterpolationIsAlibiAtScaledPositions) {
  // slopes x L / L' at positions p equal plain slopes at positions p L / L' (here L' = 4 L: positions 4 t vs t)
  ModelConfig c = small(PositionMethod::alibi);
  auto plain = make(c);
  c.alibi_interp = 4 * c.block_size;
  auto interp = make(c);
  const std::vector<float> s1 = alibi_slopes(4), s4 = alibi_slopes(4, 8.0, 0.25);
  for (int h = 0; h < 4; h++) EXPECT_FLOAT_EQ(s4[h], s1[h] / 4);
  const int T = 30, V = 50;
  auto tok = sequence(T);
  std::vector<std::int32_t> pos(T), pos4(T);
  for (int t = 0; t < T; t++) {
    pos[t] = t;
    pos4[t] = 4 * t;
  }
  ForwardOptions fo;
  fo.keep_logits = true;
  plain->forward(tok.data(), nullptr, pos.data(), 1, T, fo);
  const std::vector<float> a(plain->logits(), plain->logits() + static_cast<std::size_t>(T) * V);
  interp->forward(tok.data(), nullptr, pos4.data(), 1, T, fo);
  EXPECT_LT(max_err(interp->logits(), a.data(), a.size()), 1e-5);
  // and it changes plain positions' logits; the decoder follows the full forward
  interp->forward(tok.data(), nullptr, pos.data(), 1, T, fo);
  EXPECT_GT(max_err(interp->logits(), a.data(), a.size()), 1e-3);
  Decoder d(*interp, T, false);
  for (int t = 0; t < T; t++) {
    const float* l = d.append(&tok[t], 1);
    ASSERT_LT(max_err(l, interp->logits() + static_cast<std::size_t>(t) * V, V), 1e-5) << "token " << t;
  }
  interp->set_alibi_interp(0);  // off again: plain slopes
  interp->forward(tok.data(), nullptr, pos.data(), 1, T, fo);
  EXPECT_LT(max_err(interp->logits(), a.data(), a.size()), 1e-6);
}

}  // namespace
}  // namespace stretch
