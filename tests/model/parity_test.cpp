// Whole-model parity with PyTorch: tools/make_parity_fixtures.py (Debian's python3-torch, float64) builds the
// same GPT (docs/MODEL.md) for each position method, and tools/make_llama_fixtures.py the LLaMA family (grouped-
// query and tied multi-head), from the same weights, tokens and positions and stores
// logits, loss, every parameter gradient and the losses of 3 AdamW steps (alibi_bloom: biases, tanh GELU and the
// embedding LayerNorm; alibi_mpt: no biases, exact GELU, maximum bias 12; llama_qkv_bias: Qwen2's q/k/v biases). Our fp32 model must agree within
// 1e-4 relative. Regenerate the fixtures with: /usr/bin/python3 tools/make_parity_fixtures.py
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/safetensors.hpp"
#include "kernels/adamw.hpp"
#include "model/transformer.hpp"

namespace stretch {
namespace {

// ||a - b|| / ||b|| over a tensor, in double.
double rel_err(const float* a, const double* b, std::size_t n) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < n; i++) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

class Parity : public ::testing::TestWithParam<std::string> {};

TEST_P(Parity, LogitsLossGradientsAndAdamWMatchPyTorch) {
  const auto path = std::filesystem::path(STRETCH_SOURCE_DIR) / "tests/fixtures/parity" / (GetParam() + ".safetensors");
  ASSERT_TRUE(std::filesystem::exists(path)) << path << " is missing: run /usr/bin/python3 tools/make_parity_fixtures.py";
  SafetensorsReader f = SafetensorsReader::open(path);
  auto cj = nlohmann::json::parse(f.metadata().at("config"));
  ModelConfig c;
  if (cj.contains("arch")) c.arch = parse_arch(cj["arch"].get<std::string>(), "fixture config: arch");
  if (cj.contains("n_kv_head")) c.n_kv_head = cj["n_kv_head"];
  if (cj.contains("norm_eps")) c.norm_eps = cj["norm_eps"];
  if (cj.contains("embed_scale")) c.embed_scale = cj["embed_scale"];
  if (cj.contains("activation")) c.activation = parse_activation(cj["activation"].get<std::string>(), "fixture config: activation");
  if (cj.contains("embed_norm")) c.embed_norm = cj["embed_norm"];
  if (cj.contains("alibi_max_bias")) c.alibi_max_bias = cj["alibi_max_bias"];
  if (cj.contains("qkv_bias")) c.qkv_bias = cj["qkv_bias"];
  c.vocab_size = cj["vocab_size"];
  c.n_layer = cj["n_layer"];
  c.n_head = cj["n_head"];
  c.n_embd = cj["n_embd"];
  c.mlp_hidden = cj["mlp_hidden"];
  c.block_size = cj["block_size"];
  c.position = parse_position_method(cj["position"].get<std::string>(), "fixture config: position");
  c.bias = cj["bias"];
  c.tie_embeddings = cj["tie_embeddings"];
  c.rope_base = cj["rope_base"];
  const auto tshape = f.entry("tokens").shape;
  ASSERT_EQ(tshape.size(), 2u);
  const int B = static_cast<int>(tshape[0]), T = static_cast<int>(tshape[1]);
  if (c.arch == Arch::gpt) {
    ASSERT_EQ(GetParam().rfind(std::string(to_string(c.position)), 0), 0u) << GetParam();
  }

  Transformer model(c);
  for (auto& s : model.specs()) f.read_into("param." + s.name, s.shape, model.params().data() + s.offset);
  auto tokens = f.read_i32("tokens");
  auto targets = f.read_i32("targets");
  auto pos = f.read_i32("pos");
  ASSERT_EQ(tokens.size(), static_cast<std::size_t>(B * T));

  ForwardOptions fo;
  fo.need_grad = true;
  fo.keep_logits = true;
  const double loss = model.forward(tokens.data(), targets.data(), pos.data(), B, T, fo);
  const double ref_loss = f.read_f64("loss")[0];
  EXPECT_NEAR(loss, ref_loss, 1e-4 * std::abs(ref_loss));
  auto ref_logits = f.read_f64("logits");
  ASSERT_EQ(ref_logits.size(), static_cast<std::size_t>(B * T * c.vocab_size));
  EXPECT_LT(rel_err(model.logits(), ref_logits.data(), ref_logits.size()), 1e-4);

  model.zero_grad();
  model.forward(tokens.data(), targets.data(), pos.data(), B, T, fo);
  model.backward();
  for (auto& s : model.specs()) {
    auto ref = f.read_f64("grad." + s.name);
    ASSERT_EQ(ref.size(), s.numel()) << s.name;
    EXPECT_LT(rel_err(model.grads().data() + s.offset, ref.data(), s.numel()), 1e-4) << "gradient of " << s.name;
  }

  // 3 AdamW steps on the same batch; weight decay on matrices only (as tools/make_parity_fixtures.py). The LLaMA
  // fixtures (tools/make_llama_fixtures.py) check the model only: AdamW is architecture-independent.
  if (!f.has("adam_losses")) return;
  auto ref_losses = f.read_f64("adam_losses");
  ASSERT_EQ(ref_losses.size(), 4u);
  Buffer<float> m(model.params().size()), v(model.params().size());
  for (int step = 0; step < 4; step++) {
    model.zero_grad();
    const double l = model.forward(tokens.data(), targets.data(), pos.data(), B, T, fo);
    EXPECT_NEAR(l, ref_losses[step], 1e-4 * std::abs(ref_losses[step])) << "loss after " << step << " AdamW steps";
    if (step == 3) break;
    model.backward();
    for (auto& s : model.specs()) {
      AdamWStep a;
      a.lr = cj["lr"];
      a.beta1 = cj["beta1"];
      a.beta2 = cj["beta2"];
      a.eps = cj["eps"];
      a.weight_decay = s.kind == ParamKind::matrix ? cj["weight_decay"].get<float>() : 0.0f;
      a.t = step + 1;
      adamw_update(model.params().data() + s.offset, model.grads().data() + s.offset, m.data() + s.offset,
                   v.data() + s.offset, s.numel(), a);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllPositionMethods, Parity,
                         ::testing::Values("none", "alibi", "sinusoidal", "learned", "rope", "t5", "sinusoidal_scaled",
                                           "alibi_bloom", "alibi_mpt", "llama_gqa", "llama_mha_tied",
                                           "llama_qkv_bias"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace stretch
