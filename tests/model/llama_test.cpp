// The LLaMA family on a real checkpoint: llama2.c's stories260K imported into our model gives the logits of an
// independent float64 PyTorch implementation (tools/torch_llama.py via tools/make_llama_fixtures.py, which reads
// the .bin with its own numpy reader) for plain RoPE and the linear / NTK / YaRN scalings at s = 4; the
// conversion round-trips every weight of the llama2.c file; every scaling at s = 1 is plain RoPE.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "core/fs.hpp"
#include "io/llama2c.hpp"
#include "io/safetensors.hpp"
#include "model/llama2c_convert.hpp"
#include "test_util.hpp"

namespace stretch {
namespace {
using namespace stretch::test;

const std::filesystem::path kFixture =
    std::filesystem::path(STRETCH_SOURCE_DIR) / "tests/fixtures/llama2c/stories260k_logits.safetensors";

std::filesystem::path stories260k() { return shared_data() / "llama2c" / "stories260K.bin"; }

#define REQUIRE_STORIES260K()                                                                              \
  if (!std::filesystem::exists(stories260k()))                                                            \
  GTEST_SKIP() << "needs " << stories260k() << " (../shared/data beside the repository; see data/MANIFEST.md)"

double rel_err(const float* a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < b.size(); i++) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

TEST(Llama, Stories260kLogitsMatchPyTorchForEveryScaling) {
  REQUIRE_STORIES260K();
  auto model = model_from_llama2c(read_llama2c(stories260k()));
  SafetensorsReader f = SafetensorsReader::open(kFixture);
  const auto tokens = f.read_i32("tokens");
  const int T = static_cast<int>(tokens.size());
  const int V = model->config().vocab_size;
  const std::pair<const char*, const char*> settings[] = {
      {"none", "none"}, {"linear4", "linear:4"}, {"ntk4", "ntk:4"}, {"yarn4", "yarn:4"}};
  for (auto [name, spec] : settings) {
    RopeScaling s = RopeScaling::parse(spec, "test");
    s.original_context = 512;
    model->set_rope_scaling(s);
    // the frequencies and the attention factor are the reference's
    const auto ref_freq = f.read_f64(std::string("inv_freq.") + name);
    ASSERT_EQ(model->rope_frequencies().size(), ref_freq.size());
    for (std::size_t i = 0; i < ref_freq.size(); i++)
      EXPECT_NEAR(model->rope_frequencies()[i], ref_freq[i], 1e-6 * ref_freq[i]) << name << " pair " << i;
    const double a = f.read_f64(std::string("attn_factor.") + name)[0];
    EXPECT_NEAR(model->attention_scale(), a * a / std::sqrt(8.0), 1e-6) << name;

    std::vector<std::int32_t> targets(tokens.begin() + 1, tokens.end());
    targets.push_back(-1);
    ForwardOptions fo;
    fo.keep_logits = true;
    const double nll = model->forward(tokens.data(), targets.data(), nullptr, 1, T, fo);
    const auto ref = f.read_f32(std::string("logits.") + name);
    ASSERT_EQ(ref.size(), static_cast<std::size_t>(T) * V);
    EXPECT_LT(rel_err(model->logits(), ref), 2e-5) << name;
    EXPECT_NEAR(nll, f.read_f64(std::string("nll.") + name)[0], 1e-4) << name;
  }
}

TEST(Llama, Stories260kGreedyContinuationMatchesPyTorch) {
  REQUIRE_STORIES260K();
  auto model = model_from_llama2c(read_llama2c(stories260k()));
  SafetensorsReader f = SafetensorsReader::open(kFixture);
  std::vector<std::int32_t> seq = f.read_i32("tokens");
  const auto greedy = f.read_i32("greedy");
  const int V = model->config().vocab_size;
  ForwardOptions fo;
  fo.keep_logits = true;
  for (std::size_t k = 0; k < greedy.size(); k++) {
    const int T = static_cast<int>(seq.size());
    model->forward(seq.data(), nullptr, nullptr, 1, T, fo);
    const float* last = model->logits() + static_cast<std::size_t>(T - 1) * V;
    const int next = static_cast<int>(std::max_element(last, last + V) - last);
    ASSERT_EQ(next, greedy[k]) << "token " << k << " of the greedy continuation";
    seq.push_back(next);
  }
}

TEST(Llama, Llama2cExportKeepsEveryWeightAndTheFileSize) {
  REQUIRE_STORIES260K();
  const std::string bytes = read_file(stories260k());
  auto model = model_from_llama2c(parse_llama2c(bytes, "stories260K.bin"));
  const std::string again = serialize_llama2c(model_to_llama2c(*model));
  ASSERT_EQ(again.size(), bytes.size());
  // weights identical; the legacy freq_cis tables (skipped by every reader) may differ in the last bit
  const Llama2cWeights a = parse_llama2c(bytes, "original"), b = parse_llama2c(again, "exported");
  EXPECT_EQ(a.tok_embeddings, b.tok_embeddings);
  EXPECT_EQ(a.wq, b.wq);
  EXPECT_EQ(a.wk, b.wk);
  EXPECT_EQ(a.wv, b.wv);
  EXPECT_EQ(a.wo, b.wo);
  EXPECT_EQ(a.w1, b.w1);
  EXPECT_EQ(a.w2, b.w2);
  EXPECT_EQ(a.w3, b.w3);
  EXPECT_EQ(a.rms_att, b.rms_att);
  EXPECT_EQ(a.rms_ffn, b.rms_ffn);
  EXPECT_EQ(a.rms_final, b.rms_final);
}

TEST(Llama, UntiedGqaModelRoundTripsThroughLlama2c) {
  ModelConfig c;
  c.arch = Arch::llama;
  c.vocab_size = 37;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = 2;
  c.n_embd = 16;
  c.mlp_hidden = 24;
  c.block_size = 32;
  c.position = PositionMethod::rope;
  c.bias = false;
  c.tie_embeddings = false;
  Transformer m(c);
  m.init_weights(7);
  const std::string bytes = serialize_llama2c(model_to_llama2c(m));
  auto back = model_from_llama2c(parse_llama2c(bytes, "roundtrip"));
  ASSERT_EQ(back->params().size(), m.params().size());
  for (std::size_t i = 0; i < m.params().size(); i++) ASSERT_EQ(back->params()[i], m.params()[i]) << i;
  EXPECT_EQ(back->config().to_json(), m.config().to_json());
}

TEST(Llama, EveryScalingAtFactorOneIsPlainRope) {
  ModelConfig c;
  c.arch = Arch::llama;
  c.vocab_size = 29;
  c.n_layer = 1;
  c.n_head = 2;
  c.n_embd = 16;
  c.mlp_hidden = 20;
  c.block_size = 64;
  c.position = PositionMethod::rope;
  c.bias = false;
  Transformer plain(c);
  plain.init_weights(3);
  std::vector<std::int32_t> tok(48);
  for (std::size_t i = 0; i < tok.size(); i++) tok[i] = static_cast<std::int32_t>((i * 7 + 3) % 29);
  ForwardOptions fo;
  fo.keep_logits = true;
  plain.forward(tok.data(), nullptr, nullptr, 1, 48, fo);
  std::vector<float> ref(plain.logits(), plain.logits() + 48 * 29);
  for (const char* spec : {"linear:1", "ntk:1", "dynamic-ntk:1", "yarn:1", "yarn-paper:1"}) {
    Transformer m(c);
    std::copy(plain.params().data(), plain.params().data() + plain.params().size(), m.params().data());
    m.set_rope_scaling(RopeScaling::parse(spec, "test"));
    m.forward(tok.data(), nullptr, nullptr, 1, 48, fo);
    for (int i = 0; i < 48 * 29; i++) ASSERT_EQ(m.logits()[i], ref[i]) << spec << " logit " << i;
  }
}

}  // namespace
}  // namespace stretch
