// transformers' config.json RoPE settings <-> stretch (position/rope_scaling_hf.hpp): whole config.json cases
// against the inv_freq and attention scaling of transformers' own rotary embedding modules
// (tests/fixtures/rope_scaling/hf_rope.json "config_cases", written by tools/make_rope_scaling_fixture.py), the
// export read back, the precedence rules, and the refusals naming the key.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "position/rope.hpp"
#include "position/rope_scaling.hpp"
#include "position/rope_scaling_hf.hpp"
#include "test_util.hpp"

namespace stretch {
namespace {

using test::expect_message;

nlohmann::json fixture() {
  const std::string path = std::string(STRETCH_SOURCE_DIR) + "/tests/fixtures/rope_scaling/hf_rope.json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("missing " + path + " (run tools/make_rope_scaling_fixture.py)");
  return nlohmann::json::parse(in);
}

// Every table of `c` (a config case) from `h` within 1e-6 relative.
void expect_tables(const HfRope& h, const nlohmann::json& c) {
  const int M = c.at("max_position_embeddings").get<int>(), hd = c.at("head_dim").get<int>();
  for (const auto& t : c.at("tables")) {
    const int T = t.at("seq_len").get<int>();
    SCOPED_TRACE("T=" + std::to_string(T) + " " + h.scaling.to_string() + " base " + std::to_string(h.base));
    const auto tab = rope_tables(h.scaling, hd, h.base, M, T);
    const auto want = t.at("inv_freq").get<std::vector<double>>();
    ASSERT_EQ(tab.inv_freq.size(), want.size());
    for (std::size_t i = 0; i < want.size(); i++)
      EXPECT_NEAR(tab.inv_freq[i], want[i], 1e-6 * std::abs(want[i])) << "pair " << i;
    const double af = t.at("attention_factor").get<double>();
    EXPECT_NEAR(tab.attention_factor, af, 1e-6 * af);
  }
}

TEST(RopeScalingHf, ConfigCasesMatchTransformers) {
  const auto doc = fixture();
  const auto& cases = doc.at("config_cases");
  ASSERT_GE(cases.size(), 15u);
  for (const auto& c : cases) {
    const std::string name = c.at("name").get<std::string>();
    SCOPED_TRACE(name);
    const int M = c.at("max_position_embeddings").get<int>(), hd = c.at("head_dim").get<int>();
    const HfRope h = rope_from_hf_config(c.at("config"), M, hd, name);
    EXPECT_EQ(rope_scaling_type_name(h.scaling.type), c.at("stretch_type").get<std::string>());
    expect_tables(h, c);
    // exported and read back: the same settings, so the same tables
    nlohmann::json out = c.at("config");
    rope_to_hf_config(h.base, h.scaling, M, hd, out);
    EXPECT_FALSE(out.contains("rope_parameters"));
    const HfRope back = rope_from_hf_config(out, M, hd, name + " (exported)");
    EXPECT_EQ(back.base, h.base);
    EXPECT_EQ(back.scaling, h.scaling) << back.scaling.to_string() << " vs " << h.scaling.to_string();
    expect_tables(back, c);
  }
}

// The precedences the fixture cases pin down, spelled out: the L each type uses.
TEST(RopeScalingHf, TrainedLengthPerType) {
  const auto yarn = nlohmann::json::parse(R"({"rope_theta": 10000.0, "original_max_position_embeddings": 1024,
      "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048}})");
  EXPECT_EQ(rope_from_hf_config(yarn, 4096, 32, "c").scaling.original_context, 1024);  // top level wins
  auto inner = yarn;
  inner.erase("original_max_position_embeddings");
  EXPECT_EQ(rope_from_hf_config(inner, 4096, 32, "c").scaling.original_context, 2048);
  inner["rope_scaling"].erase("original_max_position_embeddings");
  EXPECT_EQ(rope_from_hf_config(inner, 4096, 32, "c").scaling.original_context, 0);  // = max_position_embeddings
  inner["rope_scaling"]["original_max_position_embeddings"] = 4096;
  EXPECT_EQ(rope_from_hf_config(inner, 4096, 32, "c").scaling.original_context, 0);
  // dynamic ignores original_max_position_embeddings: transformers uses max_position_embeddings
  const auto dyn = nlohmann::json::parse(R"({"original_max_position_embeddings": 1024,
      "rope_scaling": {"type": "dynamic", "factor": 2.0}})");
  const HfRope d = rope_from_hf_config(dyn, 4096, 32, "c");
  EXPECT_EQ(d.scaling.type, RopeScalingType::dynamic_ntk);
  EXPECT_EQ(d.scaling.original_context, 0);
  EXPECT_EQ(d.base, 10000.0);
  // longrope: factor defaults to max / orig
  const auto lr = nlohmann::json::parse(R"({"original_max_position_embeddings": 1024,
      "rope_scaling": {"type": "longrope", "short_factor": [1, 1], "long_factor": [2, 2]}})");
  const HfRope l = rope_from_hf_config(lr, 4096, 4, "c");
  EXPECT_EQ(l.scaling.factor, 4.0);
  EXPECT_EQ(l.scaling.original_context, 1024);
  EXPECT_TRUE(l.scaling.depends_on_length());
  // orig > max: factor < 1 reads as 1 (attention 1 either way)
  EXPECT_EQ(rope_from_hf_config(lr, 512, 4, "c").scaling.factor, 1.0);
}

TEST(RopeScalingHf, WhereTheSettingsComeFrom) {
  // a non-empty rope_scaling wins over rope_parameters; an empty one does not
  auto both = nlohmann::json::parse(R"({"rope_scaling": {"type": "linear", "factor": 2.0},
      "rope_parameters": {"rope_type": "linear", "factor": 3.0, "rope_theta": 500000.0}})");
  HfRope h = rope_from_hf_config(both, 512, 16, "c");
  EXPECT_EQ(h.scaling.factor, 2.0);
  EXPECT_EQ(h.base, 10000.0);
  both["rope_scaling"] = nlohmann::json::object();
  h = rope_from_hf_config(both, 512, 16, "c");
  EXPECT_EQ(h.scaling.factor, 3.0);
  EXPECT_EQ(h.base, 500000.0);
  // the dict's rope_theta wins over the top-level one
  const auto theta = nlohmann::json::parse(R"({"rope_theta": 1000.0,
      "rope_scaling": {"type": "linear", "factor": 2.0, "rope_theta": 2000.0}})");
  EXPECT_EQ(rope_from_hf_config(theta, 512, 16, "c").base, 2000.0);
  // yarn: betas null or 0 take the defaults (transformers' `or`), truncate null reads as false, a lone mscale is
  // dropped, and an explicit attention_factor drops mscale / mscale_all_dim
  const auto y = nlohmann::json::parse(R"({"rope_scaling": {"type": "yarn", "factor": 4.0, "beta_fast": 0,
      "beta_slow": null, "truncate": null, "mscale": 0.707}})");
  h = rope_from_hf_config(y, 4096, 32, "c");
  EXPECT_EQ(h.scaling.beta_fast, 32.0);
  EXPECT_EQ(h.scaling.beta_slow, 1.0);
  EXPECT_FALSE(h.scaling.truncate);
  EXPECT_EQ(h.scaling.mscale, 0.0);
  const auto ya = nlohmann::json::parse(R"({"rope_scaling": {"type": "yarn", "factor": 4.0, "attention_factor": 1.3,
      "mscale": 1.0, "mscale_all_dim": 0.5}})");
  h = rope_from_hf_config(ya, 4096, 32, "c");
  EXPECT_EQ(h.scaling.attention_factor, 1.3);
  EXPECT_EQ(h.scaling.mscale, 0.0);
  EXPECT_EQ(h.scaling.mscale_all_dim, 0.0);
  // partial_rotary_factor 1 is accepted
  const auto prf = nlohmann::json::parse(R"({"partial_rotary_factor": 1.0, "rope_scaling": null})");
  EXPECT_TRUE(rope_from_hf_config(prf, 512, 16, "c").scaling.is_none());
}

// Keys a type does not define are ignored, as transformers ignores them: the same frequencies as without them.
TEST(RopeScalingHf, KeysTheTypeDoesNotDefineAreIgnoredAsTransformersDoes) {
  const auto with = rope_from_hf_config(
      nlohmann::json::parse(R"({"rope_scaling": {"rope_type": "yarn", "factor": 4, "finetuned": true}})"), 4096, 8, "c");
  const auto without =
      rope_from_hf_config(nlohmann::json::parse(R"({"rope_scaling": {"rope_type": "yarn", "factor": 4}})"), 4096, 8, "c");
  EXPECT_EQ(with.scaling, without.scaling);
  const auto lin = rope_from_hf_config(
      nlohmann::json::parse(R"({"rope_scaling": {"rope_type": "linear", "factor": 4, "attention_factor": 1.2}})"), 4096,
      8, "c");
  EXPECT_EQ(lin.scaling.type, RopeScalingType::linear);
  EXPECT_EQ(lin.scaling.attention_factor, 0.0);
}

TEST(RopeScalingHf, RefusalsNameTheKey) {
  auto bad = [](const std::string& text, int hd, const std::vector<std::string>& parts) {
    SCOPED_TRACE(text);
    expect_message<InputError>([&] { rope_from_hf_config(nlohmann::json::parse(text), 4096, hd, "m/config.json"); },
                               parts);
  };
  bad(R"({"rope_scaling": {"type": "su", "factor": 2}})", 8, {"m/config.json", "rope_scaling.type", "\"su\""});
  bad(R"({"rope_parameters": {"rope_type": "mrope"}})", 8, {"rope_parameters.rope_type", "unknown RoPE type"});
  bad(R"({"partial_rotary_factor": 0.5})", 8, {"m/config.json: partial_rotary_factor", "not supported"});
  bad(R"({"rope_parameters": {"rope_type": "default", "partial_rotary_factor": 0.4}})", 8,
      {"rope_parameters.partial_rotary_factor"});
  bad(R"({"rope_scaling": {"type": "linear"}})", 8, {"rope_scaling.factor", "missing"});
  bad(R"({"rope_scaling": {"type": "dynamic"}})", 8, {"rope_scaling.factor", "missing"});
  bad(R"({"rope_scaling": {"type": "yarn"}})", 8, {"rope_scaling.factor", "missing"});
  bad(R"({"rope_scaling": {"type": "llama3", "factor": 8, "high_freq_factor": 4}})", 8,
      {"rope_scaling.low_freq_factor", "missing"});
  bad(R"({"rope_scaling": {"type": "linear", "factor": "4"}})", 8, {"rope_scaling.factor", "number"});
  bad(R"({"rope_scaling": {"type": "linear", "factor": 0.5}})", 8, {"m/config.json", "factor must be"});
  bad(R"({"rope_scaling": {"type": "longrope", "short_factor": [1, 1, 1], "long_factor": [1, 1, 1, 1]}})", 8,
      {"rope_scaling.short_factor", "3 numbers", "head_dim / 2 = 4"});
  bad(R"({"rope_scaling": {"type": "longrope", "short_factor": [1, 1, 1, 1], "long_factor": [1, 1, 1]}})", 8,
      {"rope_scaling.long_factor", "head_dim / 2 = 4"});
  bad(R"({"rope_scaling": {"type": "longrope", "long_factor": [1, 1, 1, 1]}})", 8,
      {"rope_scaling.short_factor", "missing"});
  bad(R"({"rope_scaling": {"type": "longrope", "short_factor": [1, 1, 0, 1], "long_factor": [1, 1, 1, 1]}})", 8,
      {"rope_scaling.short_factor", "positive"});
  bad(R"({"rope_parameters": {"full_attention": {"rope_type": "default"}, "sliding_attention": {"rope_type":
      "linear", "factor": 2}}})", 8, {"rope_parameters.full_attention", "per-layer-type"});
  bad(R"({"rope_scaling": {"type": "linear", "rope_type": "dynamic", "factor": 2}})", 8,
      {"rope_scaling.type", "differs"});
  bad(R"({"rope_scaling": "linear"})", 8, {"m/config.json: rope_scaling", "object"});
  bad(R"({"original_max_position_embeddings": null, "rope_scaling": {"type": "yarn", "factor": 2}})", 8,
      {"m/config.json: original_max_position_embeddings", "positive integer"});
  bad(R"({"rope_theta": -1})", 8, {"m/config.json: rope_theta", "positive"});
  bad(R"({"rope_scaling": {"type": "yarn", "factor": 4, "truncate": "no"}})", 8, {"rope_scaling.truncate"});
  bad(R"({"rope_scaling": {"type": "yarn", "factor": 4, "attention_factor": 0}})", 8,
      {"rope_scaling.attention_factor", "positive"});
  bad(R"({"rope_scaling": {"type": "yarn", "factor": 4, "beta_fast": 1, "beta_slow": 2}})", 8,
      {"m/config.json", "beta_fast > beta_slow"});
  expect_message<InputError>([] { rope_from_hf_config(nlohmann::json::array(), 512, 8, "x.json"); },
                             {"x.json", "object"});
  expect_message<InputError>([] { rope_from_hf_config(nlohmann::json::object(), 512, 7, "x.json"); },
                             {"x.json", "head size"});
}

TEST(RopeScalingHf, Export) {
  // none: rope_scaling null, and rope_parameters (which would otherwise win over null) removed
  nlohmann::json c = nlohmann::json::parse(R"({"hidden_size": 64, "rope_parameters": {"rope_type": "linear",
      "factor": 2.0}})");
  rope_to_hf_config(500000.0, RopeScaling{}, 2048, 32, c);
  EXPECT_EQ(c, nlohmann::json::parse(R"({"hidden_size": 64, "rope_theta": 500000.0, "rope_scaling": null})"));
  // ntk: a changed rope_theta with no scaling, identical frequencies
  const auto ntk = RopeScaling::parse("ntk:4", "t");
  c = nlohmann::json::object();
  rope_to_hf_config(10000.0, ntk, 2048, 64, c);
  EXPECT_TRUE(c.at("rope_scaling").is_null());
  const HfRope h = rope_from_hf_config(c, 2048, 64, "c");
  EXPECT_TRUE(h.scaling.is_none());
  const auto a = rope_tables(ntk, 64, 10000.0, 2048, 2048), b = rope_tables(h.scaling, 64, h.base, 2048, 2048);
  for (std::size_t i = 0; i < a.inv_freq.size(); i++) EXPECT_NEAR(b.inv_freq[i], a.inv_freq[i], 1e-7 * a.inv_freq[i]);
  // llama3: the 4.x form with both type keys and the trained length inside and at the top level
  c = nlohmann::json::object();
  rope_to_hf_config(500000.0, RopeScaling::parse("llama3:8,orig=8192", "t"), 131072, 128, c);
  EXPECT_EQ(c, nlohmann::json::parse(R"({"rope_theta": 500000.0, "original_max_position_embeddings": 8192,
      "rope_scaling": {"type": "llama3", "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})"));
  // yarn with orig 0 writes L = max_position_embeddings
  c = nlohmann::json::object();
  rope_to_hf_config(10000.0, RopeScaling::parse("yarn:4,truncate=0,mscale=1,mscale_all_dim=0.5", "t"), 4096, 64, c);
  EXPECT_EQ(c.at("rope_scaling").at("original_max_position_embeddings"), 4096);
  EXPECT_EQ(c.at("rope_scaling").at("truncate"), false);
  EXPECT_EQ(c.at("rope_scaling").at("mscale_all_dim"), 0.5);
  // what transformers cannot express is refused naming the type
  expect_message<ConfigError>(
      [] {
        nlohmann::json x;
        rope_to_hf_config(10000.0, RopeScaling::parse("yarn-paper:4", "t"), 4096, 64, x);
      },
      {"yarn-paper"});
  expect_message<ConfigError>(
      [] {
        nlohmann::json x;
        rope_to_hf_config(10000.0, RopeScaling::parse("dynamic-ntk:4,orig=1024", "t"), 4096, 64, x);
      },
      {"dynamic-ntk", "max_position_embeddings"});
  expect_message<ConfigError>(
      [] {
        nlohmann::json x;
        rope_to_hf_config(10000.0, RopeScaling::parse("longrope:4,short=1:1,long=1:1", "t"), 4096, 8, x);
      },
      {"longrope", "short_factor", "head_dim / 2 = 4"});
  // dynamic-ntk whose L is max_position_embeddings is fine
  c = nlohmann::json::object();
  rope_to_hf_config(10000.0, RopeScaling::parse("dynamic-ntk:4,orig=4096", "t"), 4096, 64, c);
  EXPECT_EQ(c.at("rope_scaling").at("rope_type"), "dynamic");
}

}  // namespace
}  // namespace stretch
