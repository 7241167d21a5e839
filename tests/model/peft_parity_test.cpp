// LoRA adapters against PyPI's peft itself: tools/make_lora_fixture.py made tiny Hugging Face models with PEFT
// adapters (tests/fixtures/lora) and recorded peft's logits, loss and gradients. The base goes through
// model_from_hf, the adapter through peft_to_model; the result must compute peft's numbers. And back: our adapter
// exported with model_to_peft is the file peft wrote (the llama case, unfused: tensor for tensor).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "io/safetensors.hpp"
#include "model/hf_convert.hpp"
#include "model/lora.hpp"
#include "model/peft_convert.hpp"
#include "model/transformer.hpp"

namespace stretch {
namespace {
namespace fs = std::filesystem;

fs::path fixtures() { return fs::path(STRETCH_SOURCE_DIR) / "tests/fixtures/lora"; }

const SafetensorsReader& expected() {
  static SafetensorsReader r = SafetensorsReader::open(fixtures() / "expected.safetensors");
  return r;
}

nlohmann::json adapter_config(const std::string& name) {
  std::ifstream in(fixtures() / name / "adapter" / "adapter_config.json");
  return nlohmann::json::parse(in);
}

struct Adapted {
  HfImport imp;
  std::unique_ptr<Transformer> model;
};

Adapted load(const std::string& name) {
  Adapted a{model_from_hf(fixtures() / name / "base"), nullptr};
  const SafetensorsReader w = SafetensorsReader::open(fixtures() / name / "adapter" / "adapter_model.safetensors");
  a.model = peft_to_model(*a.imp.model, a.imp.family, adapter_config(name), w, name);
  return a;
}

// Our logits and loss for the fixture's ids (targets: the ids shifted by one, the last column unscored), as a
// training forward (need_grad), so backward() can follow.
double forward(Transformer& m, const std::string& name, bool grad) {
  const std::vector<std::int32_t> ids = expected().read_i32(name + ".tokens");
  const int B = static_cast<int>(expected().entry(name + ".tokens").shape[0]);
  const int T = static_cast<int>(expected().entry(name + ".tokens").shape[1]);
  std::vector<std::int32_t> targets(ids.size(), -1);
  for (int b = 0; b < B; b++)
    for (int t = 0; t + 1 < T; t++) targets[b * T + t] = ids[b * T + t + 1];
  ForwardOptions fo;
  fo.need_grad = grad;
  fo.keep_logits = !grad;
  return m.forward(ids.data(), targets.data(), nullptr, B, T, fo);
}

class PeftParity : public ::testing::TestWithParam<const char*> {};

TEST_P(PeftParity, LogitsAndLossArePeftsAndTheAdapterMatters) {
  const std::string name = GetParam();
  Adapted a = load(name);
  ASSERT_TRUE(a.model->config().lora.enabled());
  const double loss = forward(*a.model, name, false);
  const std::vector<float> want = expected().read_f32(name + ".logits");
  const int V = a.model->config().vocab_size;
  ASSERT_EQ(want.size(), static_cast<std::size_t>(expected().entry(name + ".tokens").numel()) * V);
  double diff = 0, mag = 0, base_diff = 0;
  for (std::size_t i = 0; i < want.size(); i++) {
    diff = std::max(diff, static_cast<double>(std::abs(a.model->logits()[i] - want[i])));
    mag = std::max(mag, static_cast<double>(std::abs(want[i])));
  }
  EXPECT_LT(diff, 1e-5 * std::max(1.0, mag)) << name << ": largest logit " << mag;
  EXPECT_NEAR(loss, expected().read_f32(name + ".loss")[0], 1e-5);
  // the base alone is visibly different (the test would pass vacuously with an adapter that did nothing)
  forward(*a.imp.model, name, false);
  for (std::size_t i = 0; i < want.size(); i++)
    base_diff = std::max(base_diff, static_cast<double>(std::abs(a.imp.model->logits()[i] - want[i])));
  EXPECT_GT(base_diff, 1e-2) << name;
  // and merged into the weights, the same function
  auto merged = merge_lora(*a.model);
  forward(*merged, name, false);
  double mdiff = 0;
  for (std::size_t i = 0; i < want.size(); i++)
    mdiff = std::max(mdiff, static_cast<double>(std::abs(merged->logits()[i] - want[i])));
  EXPECT_LT(mdiff, 1e-5 * std::max(1.0, mag)) << name << " merged";
}

INSTANTIATE_TEST_SUITE_P(Cases, PeftParity, ::testing::Values("llama", "gpt2"));

// The llama case's adapter is unfused with one rank and alpha: read as it is (rank 4, alpha 8, every target), its
// gradients are peft's tensor for tensor once put in peft's layout (model_to_peft of a model holding the gradients:
// the layout change is linear), and exporting the adapter gives back the file peft wrote.
TEST(PeftParity, LlamaGradientsArePeftsAndTheAdapterRoundTrips) {
  Adapted a = load("llama");
  const LoraConfig& lc = a.model->config().lora;
  EXPECT_EQ(lc.rank, 4);
  EXPECT_EQ(lc.alpha, 8.0);
  EXPECT_EQ(lc.targets_string(), "q,k,v,o,gate,up,down");
  a.model->zero_grad();
  forward(*a.model, "llama", true);
  a.model->backward();
  Transformer grads(a.model->config());
  std::copy(a.model->grads().data(), a.model->grads().data() + a.model->grads().size(), grads.params().data());
  const PeftAdapter g = model_to_peft(grads, a.imp.family);
  int compared = 0;
  for (const HfTensorOut& t : g.tensors) {
    const std::vector<float> want = expected().read_f32("llama.grad." + t.name);
    ASSERT_EQ(want.size(), t.values.size()) << t.name;
    double diff = 0, mag = 0;
    for (std::size_t i = 0; i < want.size(); i++) {
      diff = std::max(diff, static_cast<double>(std::abs(t.values[i] - want[i])));
      mag = std::max(mag, static_cast<double>(std::abs(want[i])));
    }
    EXPECT_GT(mag, 0.0) << t.name;
    EXPECT_LT(diff, 2e-4 * mag + 1e-7) << t.name << ": largest " << mag;
    compared++;
  }
  EXPECT_EQ(compared, 2 * 7 * 2);  // A and B, 7 projections, 2 layers

  const PeftAdapter back = model_to_peft(*a.model, a.imp.family);
  const SafetensorsReader file = SafetensorsReader::open(fixtures() / "llama/adapter/adapter_model.safetensors");
  ASSERT_EQ(back.tensors.size(), file.tensors().size());
  for (const HfTensorOut& t : back.tensors) EXPECT_EQ(t.values, file.read_f32(t.name)) << t.name;
  const nlohmann::json theirs = adapter_config("llama");
  EXPECT_EQ(back.config["r"], theirs["r"]);
  EXPECT_EQ(back.config["lora_alpha"].get<double>(), theirs["lora_alpha"].get<double>());
}

// The gpt2 case: a fused c_attn of rank 3 becomes q, k and v adapters sharing its A; mlp.c_fc has rank 2 and alpha
// 5 (rank_pattern, alpha_pattern): one rank (the largest) and scale 1 for all, each module's scale folded into B.
TEST(PeftParity, Gpt2FusedAndPatternedModulesBecomeOneRankAndScale) {
  Adapted a = load("gpt2");
  const LoraConfig& lc = a.model->config().lora;
  EXPECT_EQ(lc.rank, 3);
  EXPECT_EQ(lc.scale(), 1.0f);
  EXPECT_EQ(lc.targets_string(), "q,k,v,o,up");
}

TEST(PeftParity, WhatStretchCannotReadIsRefusedNamingTheKey) {
  HfImport imp = model_from_hf(fixtures() / "llama" / "base");
  const SafetensorsReader w = SafetensorsReader::open(fixtures() / "llama/adapter/adapter_model.safetensors");
  for (const auto& [key, value] : std::vector<std::pair<std::string, nlohmann::json>>{
           {"use_dora", true}, {"bias", "all"}, {"modules_to_save", {"lm_head"}}, {"use_rslora", true},
           {"layers_to_transform", {0}}, {"peft_type", "IA3"}}) {
    nlohmann::json cfg = adapter_config("llama");
    cfg[key] = value;
    try {
      peft_to_model(*imp.model, imp.family, cfg, w, "adapter");
      ADD_FAILURE() << key << " was accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  }
  // a gpt2 adapter on the llama base: its tensors name modules the llama has not
  const SafetensorsReader g = SafetensorsReader::open(fixtures() / "gpt2/adapter/adapter_model.safetensors");
  try {
    peft_to_model(*imp.model, imp.family, adapter_config("gpt2"), g, "gpt2-adapter");
    ADD_FAILURE() << "a gpt2 adapter was put on a llama";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("c_attn"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace stretch
