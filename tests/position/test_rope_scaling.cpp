// RoPE scalings (position/rope_scaling.hpp): reductions to plain RoPE, the formulas per type, spec parsing and
// JSON round trips, error messages, and agreement with Hugging Face transformers
// (tests/fixtures/rope_scaling/hf_rope.json, written by tools/make_rope_scaling_fixture.py).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <numbers>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "position/rope.hpp"
#include "position/rope_scaling.hpp"

namespace stretch {
namespace {

constexpr RopeScalingType kAllTypes[] = {RopeScalingType::none,        RopeScalingType::linear,
                                         RopeScalingType::ntk,         RopeScalingType::dynamic_ntk,
                                         RopeScalingType::yarn,        RopeScalingType::yarn_paper};

RopeScaling make(RopeScalingType t, double s) {
  RopeScaling r;
  r.type = t;
  r.factor = s;
  return r;
}

// Expects `what` to throw E whose message contains every string in `parts`.
template <class E, class Fn>
void expect_message(Fn&& what, const std::vector<std::string>& parts) {
  try {
    what();
    ADD_FAILURE() << "no exception";
  } catch (const E& e) {
    const std::string m = e.what();
    for (const auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "'" << p << "' not in: " << m;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

TEST(RopeScaling, FactorOneIsPlainRope) {
  for (int d : {2, 8, 64, 128})
    for (double base : {10000.0, 500000.0})
      for (auto t : kAllTypes) {
        if (d == 2 && (t == RopeScalingType::ntk || t == RopeScalingType::dynamic_ntk)) continue;
        const auto ref = rope_inv_freq(d, base);
        for (int seq_len : {1, 256, 512}) {
          const auto tab = rope_tables(make(t, 1.0), d, base, 512, seq_len);
          EXPECT_EQ(tab.inv_freq, ref) << rope_scaling_type_name(t) << " d=" << d;
          EXPECT_EQ(tab.attention_factor, 1.0) << rope_scaling_type_name(t);
        }
      }
}

TEST(RopeScaling, LinearDividesByFactor) {
  for (int d : {8, 64})
    for (double s : {1.5, 2.0, 4.0, 8.0}) {
      const auto ref = rope_inv_freq(d, 10000.0);
      const auto tab = rope_tables(make(RopeScalingType::linear, s), d, 10000.0, 512, 4096);
      ASSERT_EQ(tab.inv_freq.size(), ref.size());
      for (std::size_t i = 0; i < ref.size(); i++) {
        const double want = static_cast<double>(ref[i]) / s;
        EXPECT_NEAR(tab.inv_freq[i], want, 1e-7 * want) << d << " " << s << " " << i;
      }
      EXPECT_EQ(tab.attention_factor, 1.0);
    }
}

TEST(RopeScaling, NtkIsPlainRopeAtScaledBase) {
  for (int d : {4, 8, 64, 128})
    for (double s : {2.0, 4.0, 8.0}) {
      const double base2 = 10000.0 * std::pow(s, static_cast<double>(d) / (d - 2));
      const auto tab = rope_tables(make(RopeScalingType::ntk, s), d, 10000.0, 512, 512);
      EXPECT_EQ(tab.inv_freq, rope_inv_freq(d, base2)) << d << " " << s;
      EXPECT_EQ(tab.inv_freq[0], 1.0f);
      EXPECT_EQ(tab.attention_factor, 1.0);
    }
  // the lowest frequency is divided by exactly s: base'^(-(d-2)/d) = base^(-(d-2)/d) / s
  const auto t8 = rope_tables(make(RopeScalingType::ntk, 4.0), 8, 10000.0, 512, 512);
  EXPECT_NEAR(t8.inv_freq[3], 0.001 / 4.0, 1e-7 * 0.001 / 4.0);
}

TEST(RopeScaling, DynamicNtk) {
  const auto ref = rope_inv_freq(8, 10000.0);
  const auto dyn = make(RopeScalingType::dynamic_ntk, 4.0);
  for (int seq_len : {0, 1, 100, 511, 512}) EXPECT_EQ(rope_tables(dyn, 8, 10000.0, 512, seq_len).inv_freq, ref);
  // seq_len 1024, L 512, s 4: base' = base * (4 * 2 - 3)^(8/6) = base * 5^(4/3)
  const auto t = rope_tables(dyn, 8, 10000.0, 512, 1024);
  EXPECT_EQ(t.inv_freq, rope_inv_freq(8, 10000.0 * std::pow(5.0, 8.0 / 6.0)));
  EXPECT_EQ(t.attention_factor, 1.0);
  // the base grows with seq_len, so every frequency but the first shrinks
  const auto a = rope_tables(dyn, 8, 10000.0, 512, 2048).inv_freq;
  const auto b = rope_tables(dyn, 8, 10000.0, 512, 4096).inv_freq;
  for (std::size_t i = 1; i < a.size(); i++) {
    EXPECT_LT(a[i], t.inv_freq[i]);
    EXPECT_LT(b[i], a[i]);
  }
  // original_context overrides L_train
  auto o = dyn;
  o.original_context = 1024;
  EXPECT_EQ(rope_tables(o, 8, 10000.0, 512, 1024).inv_freq, ref);
}

TEST(RopeScaling, YarnEnds) {
  // hd 128, base 10000, L 4096: corr_dim(32) = 20.9 -> low 20; corr_dim(1) = 45.0 -> high 46
  const int d = 128;
  const auto ref = rope_inv_freq(d, 10000.0);
  for (double s : {2.0, 4.0, 16.0}) {
    const auto t = rope_tables(make(RopeScalingType::yarn, s), d, 10000.0, 4096, 4096);
    EXPECT_EQ(t.inv_freq[0], ref[0]);
    for (int i = 0; i <= 20; i++) EXPECT_EQ(t.inv_freq[i], ref[i]) << i;
    for (int i = 46; i < d / 2; i++) {
      const double want = static_cast<double>(ref[i]) / s;
      EXPECT_NEAR(t.inv_freq[i], want, 1e-7 * want) << i;
    }
    for (int i = 21; i < 46; i++) {  // strictly between: interpolated, decreasing
      EXPECT_LT(t.inv_freq[i], ref[i]) << i;
      EXPECT_GT(t.inv_freq[i], ref[i] / s) << i;
    }
    EXPECT_NEAR(t.attention_factor, 0.1 * std::log(s) + 1.0, 1e-15);
  }
  // the paper's ramp: unchanged where L/lambda >= beta_fast, divided by s where L/lambda <= beta_slow
  const auto p = rope_tables(make(RopeScalingType::yarn_paper, 4.0), d, 10000.0, 4096, 4096);
  for (int i = 0; i < d / 2; i++) {
    const double r = 4096.0 * ref[i] / (2.0 * std::numbers::pi);
    if (r >= 32.0) {
      EXPECT_NEAR(p.inv_freq[i], ref[i], 1e-7 * ref[i]) << i;
    }
    if (r <= 1.0) {
      EXPECT_NEAR(p.inv_freq[i], ref[i] / 4.0, 1e-7 * ref[i]) << i;
    }
  }
  EXPECT_EQ(p.inv_freq[0], ref[0]);
  EXPECT_NEAR(p.inv_freq[d / 2 - 1], ref[d / 2 - 1] / 4.0, 1e-7 * ref[d / 2 - 1]);
  EXPECT_NEAR(p.attention_factor, 0.1 * std::log(4.0) + 1.0, 1e-15);
  // an explicit attention factor wins
  auto y = make(RopeScalingType::yarn, 4.0);
  y.attention_factor = 1.5;
  EXPECT_EQ(rope_tables(y, d, 10000.0, 4096, 4096).attention_factor, 1.5);
}

TEST(RopeScaling, YarnStories260KGeometry) {
  // hd 8, base 10000, L 512: corr_dim(32) = 8 ln(512/(64 pi)) / (2 ln 10000) = 0.4183 -> low 0;
  // corr_dim(1) = 8 ln(512/(2 pi)) / (2 ln 10000) = 1.9235 -> high 2: ramp = 0, 0.5, 1, 1
  const auto ref = rope_inv_freq(8, 10000.0);
  const auto t = rope_tables(make(RopeScalingType::yarn, 4.0), 8, 10000.0, 512, 2048);
  EXPECT_EQ(t.inv_freq[0], ref[0]);
  EXPECT_NEAR(t.inv_freq[1], 0.1 * (0.5 / 4 + 0.5), 1e-7 * 0.0625);
  EXPECT_NEAR(t.inv_freq[2], 0.01 / 4, 1e-7 * 0.0025);
  EXPECT_NEAR(t.inv_freq[3], 0.001 / 4, 1e-7 * 0.00025);
  EXPECT_NEAR(t.attention_factor, 1.1386294361119891, 1e-15);
}

TEST(RopeScaling, ParseAndToString) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"none", "none"},
      {"none:1", "none"},
      {"linear:4", "linear:4"},
      {"ntk:2.5", "ntk:2.5"},
      {"dynamic-ntk:4", "dynamic-ntk:4"},
      {"dynamic_ntk:4", "dynamic-ntk:4"},
      {"yarn:4", "yarn:4"},
      {"yarn-paper:8", "yarn-paper:8"},
      {"yarn_paper:8", "yarn-paper:8"},
      {"yarn:4,orig=512,beta_fast=32,beta_slow=1", "yarn:4,orig=512"},
      {"yarn:16,beta_fast=16,beta_slow=2,attention_factor=1.25", "yarn:16,beta_fast=16,beta_slow=2,attention_factor=1.25"},
      {"linear:1.1,orig=2048", "linear:1.1,orig=2048"},
  };
  for (const auto& [spec, want] : cases) {
    const auto r = RopeScaling::parse(spec, "--rope-scaling");
    EXPECT_EQ(r.to_string(), want) << spec;
    EXPECT_EQ(RopeScaling::parse(r.to_string(), "--rope-scaling"), r) << spec;
    EXPECT_EQ(RopeScaling::from_json(r.to_json(), "test.json"), r) << spec;
    // through text as well
    EXPECT_EQ(RopeScaling::from_json(nlohmann::json::parse(r.to_json().dump()), "test.json"), r) << spec;
  }
  const auto y = RopeScaling::parse("yarn:4,orig=512", "--rope-scaling");
  EXPECT_EQ(y.type, RopeScalingType::yarn);
  EXPECT_EQ(y.factor, 4.0);
  EXPECT_EQ(y.original_context, 512);
  EXPECT_FALSE(y.is_none());
  EXPECT_TRUE(RopeScaling::parse("none", "--rope-scaling").is_none());
  EXPECT_EQ(y.to_json(), nlohmann::json::parse(
                             R"({"type": "yarn", "factor": 4, "original_context": 512, "beta_fast": 32, "beta_slow": 1})"));
  EXPECT_EQ(RopeScaling().to_json(), nlohmann::json::parse(R"({"type": "none", "factor": 1, "original_context": 0})"));
  for (auto t : kAllTypes) {
    const auto r = make(t, t == RopeScalingType::none ? 1.0 : 3.0);
    EXPECT_EQ(RopeScaling::parse(r.to_string(), "--x"), r);
  }
  // from_json: missing fields default; the type spelling with an underscore is accepted
  const auto j = RopeScaling::from_json(nlohmann::json::parse(R"({"type": "dynamic_ntk", "factor": 2})"), "c.json");
  EXPECT_EQ(j.type, RopeScalingType::dynamic_ntk);
  EXPECT_EQ(j.factor, 2.0);
  EXPECT_EQ(j.original_context, 0);
}

TEST(RopeScaling, BadSpecsNameTheFlag) {
  const std::string forms = "none, linear:S, ntk:S, dynamic-ntk:S, yarn:S, yarn-paper:S";
  auto bad = [&](const std::string& spec, const std::string& why) {
    SCOPED_TRACE(spec);
    expect_message<ConfigError>([&] { RopeScaling::parse(spec, "--rope-scaling"); },
                                {"--rope-scaling", "'" + spec + "'", forms, why});
  };
  bad("", "unknown scaling type");
  bad("rope:4", "unknown scaling type 'rope'");
  bad("Yarn:4", "unknown scaling type");
  bad("yarn", "missing the factor");
  bad("yarn:", "not a number");
  bad("yarn:abc", "not a number");
  bad("yarn:4x", "not a number");
  bad("yarn:inf", "not a number");
  bad("yarn:nan", "not a number");
  bad("linear:0.5", "factor must be a finite number >= 1");
  bad("linear:-2", ">= 1");
  bad("none:2", "no scaling type");
  bad("yarn:4,orig", "key=value");
  bad("yarn:4,orig=0", "bad value '0' for orig");
  bad("yarn:4,orig=-5", "bad value");
  bad("yarn:4,orig=5.5", "bad value");
  bad("yarn:4,bogus=1", "unknown key 'bogus'");
  bad("yarn:4,beta_fast=1,beta_slow=2", "beta_fast > beta_slow > 0");
  bad("yarn:4,beta_slow=0", "beta_fast > beta_slow > 0");
  bad("linear:4,beta_fast=16", "only to yarn");
  bad("ntk:4,attention_factor=2", "only to yarn");
  bad("yarn:4,attention_factor=-1", "attention_factor must be >= 0");
  bad("yarn:4,", "key=value");

  // from_json: InputError naming the source and the field
  auto bad_json = [&](const std::string& text, const std::string& field) {
    SCOPED_TRACE(text);
    expect_message<InputError>([&] { RopeScaling::from_json(nlohmann::json::parse(text), "run/config.json"); },
                               {"run/config.json", field});
  };
  bad_json(R"({"type": "rope", "factor": 2})", "rope_scaling.type");
  bad_json(R"({"type": 3})", "rope_scaling.type");
  bad_json(R"({"type": "yarn", "factor": "4"})", "rope_scaling.factor");
  bad_json(R"({"type": "yarn", "factor": 4, "original_context": -1})", "rope_scaling.original_context");
  bad_json(R"({"type": "yarn", "factor": 4, "original_context": 1.5})", "rope_scaling.original_context");
  bad_json(R"({"type": "yarn", "factor": 4, "beta_fast": null})", "rope_scaling.beta_fast");
  bad_json(R"({"type": "yarn", "factor": 4, "extra": 1})", "rope_scaling.extra");
  bad_json(R"({"type": "linear", "factor": 0.5})", "factor");
  bad_json(R"([1, 2])", "rope_scaling");
}

TEST(RopeScaling, BadTableArguments) {
  const auto y = make(RopeScalingType::yarn, 4.0);
  EXPECT_THROW(rope_tables(y, 7, 10000.0, 512, 512), ConfigError);
  EXPECT_THROW(rope_tables(y, 0, 10000.0, 512, 512), ConfigError);
  EXPECT_THROW(rope_tables(y, 8, 0.0, 512, 512), ConfigError);
  EXPECT_THROW(rope_tables(y, 8, -1.0, 512, 512), ConfigError);
  EXPECT_THROW(rope_tables(y, 8, 10000.0, 0, 512), ConfigError);
  EXPECT_THROW(rope_tables(y, 8, 10000.0, 512, -1), ConfigError);
  EXPECT_THROW(rope_tables(make(RopeScalingType::ntk, 2.0), 2, 10000.0, 512, 512), ConfigError);
  EXPECT_THROW(rope_tables(make(RopeScalingType::linear, 0.5), 8, 10000.0, 512, 512), ConfigError);
  EXPECT_THROW(rope_tables(make(RopeScalingType::none, 2.0), 8, 10000.0, 512, 512), ConfigError);
  auto o = y;
  o.original_context = 512;
  EXPECT_NO_THROW(rope_tables(o, 8, 10000.0, 0, 512));  // original_context stands in for L_train
}

RopeScalingType type_of(const std::string& name) {
  return RopeScaling::parse(name == "none" ? "none" : name + ":1", "fixture").type;
}

TEST(RopeScalingFixture, MatchesHuggingFace) {
  const std::string path = std::string(STRETCH_SOURCE_DIR) + "/tests/fixtures/rope_scaling/hf_rope.json";
  std::ifstream in(path);
  ASSERT_TRUE(in) << "missing " << path << " (run tools/make_rope_scaling_fixture.py)";
  const auto doc = nlohmann::json::parse(in);
  ASSERT_TRUE(doc.contains("transformers_version"));
  const auto& cases = doc.at("cases");
  ASSERT_GE(cases.size(), 10u);
  int n = 0;
  for (const auto& c : cases) {
    RopeScaling s;
    s.type = type_of(c.at("type").get<std::string>());
    s.factor = c.at("factor").get<double>();
    if (c.contains("beta_fast")) s.beta_fast = c.at("beta_fast").get<double>();
    if (c.contains("beta_slow")) s.beta_slow = c.at("beta_slow").get<double>();
    const int d = c.at("head_dim").get<int>();
    const double base = c.at("base").get<double>();
    const int L = c.at("L_train").get<int>();
    const int seq_len = c.at("seq_len").get<int>();
    SCOPED_TRACE(c.at("hf_type").get<std::string>() + " " + s.to_string() + " d=" + std::to_string(d) +
                 " base=" + std::to_string(base) + " L=" + std::to_string(L) + " T=" + std::to_string(seq_len));
    const auto tab = rope_tables(s, d, base, L, seq_len);
    const auto want = c.at("inv_freq").get<std::vector<double>>();
    ASSERT_EQ(tab.inv_freq.size(), want.size());
    for (std::size_t i = 0; i < want.size(); i++)
      EXPECT_NEAR(tab.inv_freq[i], want[i], 1e-6 * std::abs(want[i])) << "pair " << i;
    const double af = c.at("attention_factor").get<double>();
    EXPECT_NEAR(tab.attention_factor, af, 1e-6 * af);
    n++;
  }
  EXPECT_EQ(n, static_cast<int>(cases.size()));
}

}  // namespace
}  // namespace stretch
