// Incremental decoding against the full forward: for every position method and both families (with grouped-
// query attention, windows, log-n and RoPE scalings), the logits of a cached decode equal those of a full
// forward over the same prefix; a sliding cache equals a full forward with an attention window of ctx; a full cache
// that cannot slide is an error naming --ctx; greedy decoding of stories260K reproduces the PyTorch reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "io/llama2c.hpp"
#include "io/safetensors.hpp"
#include "kernels/matmul.hpp"
#include "model/decoder.hpp"
#include "model/llama2c_convert.hpp"
#include "test_util.hpp"

namespace stretch {
namespace {

struct Case {
  const char* name;
  Arch arch;
  PositionMethod position;
  int window = 0;
  LognMode logn = LognMode::off;
  const char* scaling = "none";
  bool embed_norm = false, exact_gelu = false, qkv_bias = false, bias = true;
  int heads = 4;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

const Case kCases[] = {
    {"gpt_none", Arch::gpt, PositionMethod::none},
    {"gpt_alibi", Arch::gpt, PositionMethod::alibi},
    {"gpt_sinusoidal", Arch::gpt, PositionMethod::sinusoidal},
    {"gpt_learned", Arch::gpt, PositionMethod::learned},
    {"gpt_rope", Arch::gpt, PositionMethod::rope},
    {"gpt_t5", Arch::gpt, PositionMethod::t5},
    {"gpt_alibi_window_logn", Arch::gpt, PositionMethod::alibi, 5, LognMode::full},
    {"llama_rope_gqa", Arch::llama, PositionMethod::rope},
    {"llama_rope_gqa_yarn_window", Arch::llama, PositionMethod::rope, 6, LognMode::beyond, "yarn:2"},
    {"llama_alibi_gqa", Arch::llama, PositionMethod::alibi},
    {"llama_t5_gqa", Arch::llama, PositionMethod::t5},
    // BLOOM's block (embedding LayerNorm), MPT's (exact GELU, no biases; 8 heads), Qwen2's (q/k/v biases)
    {"gpt_alibi_embed_norm", Arch::gpt, PositionMethod::alibi, 0, LognMode::off, "none", true},
    {"gpt_alibi_exact_gelu_no_bias", Arch::gpt, PositionMethod::alibi, 0, LognMode::off, "none", false, true, false,
     false, 8},
    {"llama_rope_gqa_qkv_bias", Arch::llama, PositionMethod::rope, 0, LognMode::off, "none", false, false, true},
};

std::unique_ptr<Transformer> make(const Case& k) {
  ModelConfig c;
  c.arch = k.arch;
  c.vocab_size = 50;
  c.n_layer = 2;
  c.n_head = k.heads;
  c.n_kv_head = k.arch == Arch::llama ? 2 : 0;
  c.n_embd = 32;
  c.mlp_hidden = 40;
  c.block_size = 32;
  c.position = k.position;
  c.bias = k.arch == Arch::gpt && k.bias;
  c.embed_norm = k.embed_norm;
  c.activation = k.exact_gelu ? Activation::gelu : Activation::gelu_tanh;
  c.qkv_bias = k.qkv_bias;
  c.attn_window = k.window;
  c.logn = k.logn;
  c.rope_scaling = RopeScaling::parse(k.scaling, "test");
  auto m = std::make_unique<Transformer>(c);
  m->init_weights(21);
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

// max |a - b| / max(1, max |b|)
double max_err(const float* a, const float* b, std::size_t n) {
  double e = 0, scale = 1;
  for (std::size_t i = 0; i < n; i++) {
    e = std::max(e, static_cast<double>(std::abs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::abs(b[i])));
  }
  return e / scale;
}

class Decode : public ::testing::TestWithParam<Case> {};

TEST_P(Decode, CachedLogitsEqualTheFullForward) {
  auto m = make(GetParam());
  const int T = 28, V = 50;
  auto tok = sequence(T);
  ForwardOptions fo;
  fo.keep_logits = true;
  m->forward(tok.data(), nullptr, nullptr, 1, T, fo);
  std::vector<float> full(m->logits(), m->logits() + static_cast<std::size_t>(T) * V);

  Decoder d(*m, 32, false);
  const float* chunk = d.append(tok.data(), 10, true);  // prefill as one chunk
  EXPECT_LT(max_err(chunk, full.data(), 10u * V), 1e-5);
  for (int t = 10; t < T; t++) {
    const float* l = d.append(&tok[t], 1);
    ASSERT_LT(max_err(l, full.data() + static_cast<std::size_t>(t) * V, V), 1e-5) << "token " << t;
  }
  EXPECT_EQ(d.length(), T);
  EXPECT_EQ(d.cache_bytes(), 2u * 2 * 32 * m->config().kv_dim() * sizeof(float));
}

// Weights kept in bf16 (eval, passkey, generate --precision bf16): the cached decoder uses the same bf16 products as
// the full forward, so their logits agree as closely as in fp32 (only the products' summation order differs),
// while both differ from the fp32 model's by bf16 rounding.
TEST_P(Decode, Bf16WeightsCachedLogitsEqualTheFullForward) {
  if (!matmul_backend().bf16) GTEST_SKIP() << "no bf16 products on this CPU";
  auto m = make(GetParam());
  const int T = 20, V = 50;
  auto tok = sequence(T);
  ForwardOptions fo;
  fo.keep_logits = true;
  m->forward(tok.data(), nullptr, nullptr, 1, T, fo);
  std::vector<float> fp32(m->logits(), m->logits() + static_cast<std::size_t>(T) * V);
  m->store_weights(WeightStorage::bf16);
  m->forward(tok.data(), nullptr, nullptr, 1, T, fo);
  std::vector<float> full(m->logits(), m->logits() + static_cast<std::size_t>(T) * V);
  EXPECT_GT(max_err(full.data(), fp32.data(), full.size()), 1e-6) << "bf16 products must show";
  EXPECT_LT(max_err(full.data(), fp32.data(), full.size()), 5e-2);

  Decoder d(*m, 32, false);
  const float* chunk = d.append(tok.data(), 8, true);
  EXPECT_LT(max_err(chunk, full.data(), 8u * V), 1e-5);
  for (int t = 8; t < T; t++) {
    const float* l = d.append(&tok[t], 1);
    ASSERT_LT(max_err(l, full.data() + static_cast<std::size_t>(t) * V, V), 1e-5) << "token " << t;
  }
}

// A 16-bit key/value cache: the prompt's chunk attends over its own fp32 keys (the same logits as f32's); every
// token after it reads the rounded cache, and its logits stay within the rounding of bf16 (8 significant bits) or
// f16 (11), f16 closer than bf16; the cache takes half the bytes. With attention sinks (rope keys cached
// unrotated, rotated per query) as well as without.
TEST_P(Decode, SixteenBitCacheStaysWithinItsRounding) {
  auto m = make(GetParam());
  const int T = 28, V = 50;
  auto tok = sequence(T);
  const bool sinks = GetParam().position == PositionMethod::rope && GetParam().window == 0;
  const int ctx = sinks ? 16 : 32, keep = sinks ? 2 : -1;
  auto decode = [&](KvType kv, std::vector<float>& out) {
    Decoder d(*m, ctx, sinks, keep, {}, kv);
    const float* chunk = d.append(tok.data(), 10, true);
    out.assign(chunk, chunk + 10 * V);
    for (int t = 10; t < T; t++) {
      const float* l = d.append(&tok[t], 1);
      out.insert(out.end(), l, l + V);
    }
    return d.cache_bytes();
  };
  std::vector<float> f32, b16, h16;
  const std::size_t bytes = decode(KvType::f32, f32);
  EXPECT_EQ(decode(KvType::bf16, b16), bytes / 2);
  EXPECT_EQ(decode(KvType::f16, h16), bytes / 2);
  EXPECT_EQ(max_err(b16.data(), f32.data(), 10u * V), 0.0) << "the prefill reads its own fp32 keys";
  EXPECT_EQ(max_err(h16.data(), f32.data(), 10u * V), 0.0);
  const std::size_t rest = static_cast<std::size_t>(T - 10) * V;
  const double eb = max_err(b16.data() + 10 * V, f32.data() + 10 * V, rest);
  const double eh = max_err(h16.data() + 10 * V, f32.data() + 10 * V, rest);
  EXPECT_GT(eb, 0.0) << "the bf16 cache must show";
  EXPECT_LT(eb, 3e-2);
  EXPECT_LT(eh, eb / 2) << "f16 keeps 3 more bits than bf16";
}

INSTANTIATE_TEST_SUITE_P(All, Decode, ::testing::ValuesIn(kCases), [](const auto& info) { return std::string(info.param.name); });

TEST(Decode, SlidingCacheEqualsWindowedAttentionOverTheWholeSequence) {
  for (const Case& k : {Case{"alibi", Arch::gpt, PositionMethod::alibi}, Case{"t5", Arch::gpt, PositionMethod::t5},
                        Case{"none", Arch::llama, PositionMethod::none}}) {
    auto m = make(k);
    const int ctx = 8, V = 50;
    auto tok = sequence(40);
    ForwardOptions fo;
    fo.keep_logits = true;
    // the reference: a full forward over all 40 tokens where every query sees its latest ctx keys (a window of
    // ctx). Not a fresh forward over the last ctx tokens: cached keys of upper layers still carry what lower
    // layers saw before the oldest token was dropped, exactly as in windowed attention.
    auto ref = make(k);
    ref->set_attn_window(ctx);
    ref->forward(tok.data(), nullptr, nullptr, 1, 40, fo);
    Decoder e(*m, ctx, true);
    for (int t = 0; t < 40; t++) {
      const float* l = e.append(&tok[t], 1);
      ASSERT_LT(max_err(l, ref->logits() + static_cast<std::size_t>(t) * V, V), 1e-5) << k.name << " token " << t;
    }
    EXPECT_EQ(e.length(), 40);
  }
}

TEST(Decode, AFullCacheIsAnErrorNamingCtx) {
  auto m = make(kCases[4]);  // rope
  Decoder d(*m, 8, false);
  auto tok = sequence(9);
  d.append(tok.data(), 8);
  try {
    d.append(&tok[8], 1);
    FAIL() << "expected ContextFull";
  } catch (const ContextFull& e) {
    EXPECT_NE(std::string(e.what()).find("`ctx`"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("`rope_scaling`"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Decoder(*m, 8, true), ConfigError);  // rope cannot slide
  auto learned = make(kCases[3]);
  Decoder dl(*learned, 64, false);
  auto long_tok = sequence(33);
  EXPECT_THROW(dl.append(long_tok.data(), 33), ContextFull);  // the table has 32 rows
}

TEST(Decode, Stories260kGreedyReproducesThePyTorchReference) {
  const auto bin = test::shared_data() / "llama2c" / "stories260K.bin";
  if (!std::filesystem::exists(bin)) GTEST_SKIP() << "needs " << bin << " (../shared/data beside the repository)";
  auto model = model_from_llama2c(read_llama2c(bin));
  SafetensorsReader f = SafetensorsReader::open(std::filesystem::path(STRETCH_SOURCE_DIR) /
                                                "tests/fixtures/llama2c/stories260k_logits.safetensors");
  const auto prompt = f.read_i32("tokens");
  const auto greedy = f.read_i32("greedy");
  const int V = model->config().vocab_size;
  Decoder d(*model, 512, false);
  const float* l = d.append(prompt.data(), static_cast<int>(prompt.size()));
  for (std::size_t k = 0; k < greedy.size(); k++) {
    const std::int32_t next = static_cast<std::int32_t>(std::max_element(l, l + V) - l);
    ASSERT_EQ(next, greedy[k]) << "token " << k;
    l = d.append(&next, 1);
  }
}

}  // namespace
}  // namespace stretch
