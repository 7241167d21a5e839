// RoPE scalings (position/rope_scaling.hpp): reductions to plain RoPE, the formulas per type (llama3's bands and
// step, longrope's switch at the original length, yarn's mscale and truncate), spec parsing and JSON round trips,
// error messages, and agreement with Hugging Face transformers (tests/fixtures/rope_scaling/hf_rope.json,
// written by tools/make_rope_scaling_fixture.py).
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
#include "test_util.hpp"

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

using test::expect_message;

// `spec` parses, prints as `want`, and comes back equal through the spec form, JSON and JSON text.
void expect_round_trip(const std::string& spec, const std::string& want) {
  const auto r = RopeScaling::parse(spec, "--rope-scaling");
  EXPECT_EQ(r.to_string(), want) << spec;
  EXPECT_EQ(RopeScaling::parse(r.to_string(), "--rope-scaling"), r) << spec;
  EXPECT_EQ(RopeScaling::from_json(r.to_json(), "test.json"), r) << spec;
  EXPECT_EQ(RopeScaling::from_json(nlohmann::json::parse(r.to_json().dump()), "test.json"), r) << spec;
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
  // hd 8, base 10000, L 512: corr_dim(32) = 8 ln(512/(64 pi)) / (2 ln 10000) = 0.4059 -> low 0;
  // corr_dim(1) = 8 ln(512/(2 pi)) / (2 ln 10000) = 1.9111 -> high 2: ramp = 0, 0.5, 1, 1
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
  for (const auto& [spec, want] : cases) expect_round_trip(spec, want);
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

// ---- llama3, longrope, yarn's mscale / truncate ----

RopeScaling longrope(double s, std::vector<double> short_f, std::vector<double> long_f) {
  RopeScaling r;
  r.type = RopeScalingType::longrope;
  r.factor = s;
  r.short_factor = std::move(short_f);
  r.long_factor = std::move(long_f);
  return r;
}

TEST(RopeScaling, NewTypesAtFactorOneArePlainRope) {
  for (int d : {8, 64, 128})
    for (double base : {10000.0, 500000.0}) {
      const auto ref = rope_inv_freq(d, base);
      const std::vector<double> ones(static_cast<std::size_t>(d / 2), 1.0);
      for (int seq_len : {1, 512, 513, 4096}) {
        const auto l3 = rope_tables(make(RopeScalingType::llama3, 1.0), d, base, 512, seq_len);
        EXPECT_EQ(l3.inv_freq, ref) << d;
        EXPECT_EQ(l3.attention_factor, 1.0);
        const auto lr = rope_tables(longrope(1.0, ones, ones), d, base, 512, seq_len);
        EXPECT_EQ(lr.inv_freq, ref) << d;
        EXPECT_EQ(lr.attention_factor, 1.0);
      }
    }
}

TEST(RopeScaling, Llama3Bands) {
  // d 128, base 500000, L 8192, s 8, lo 1, hi 4 (Llama 3.1): wavelengths 2 pi / theta_i below L / 4 = 2048 are
  // kept, above L / 1 = 8192 divided by 8, in between mixed with g = (L / lambda - 1) / 3 in (0, 1).
  const int d = 128;
  const double base = 500000.0, L = 8192.0;
  auto s = make(RopeScalingType::llama3, 8.0);
  const auto ref = rope_inv_freq(d, base);
  const auto t = rope_tables(s, d, base, 8192, 8192);
  EXPECT_EQ(t.attention_factor, 1.0);
  int kept = 0, divided = 0, mixed = 0;
  for (int i = 0; i < d / 2; i++) {
    const double th = std::pow(base, -2.0 * i / d);
    const double wavelen = 2.0 * std::numbers::pi / th;
    if (wavelen < L / 4) {
      EXPECT_EQ(t.inv_freq[i], ref[i]) << i;
      kept++;
    } else if (wavelen > L) {
      EXPECT_NEAR(t.inv_freq[i], th / 8.0, 1e-7 * th / 8.0) << i;
      divided++;
    } else {
      const double g = (L / wavelen - 1.0) / 3.0;
      EXPECT_GT(g, 0.0);
      EXPECT_LT(g, 1.0);
      EXPECT_NEAR(t.inv_freq[i], th * ((1.0 - g) / 8.0 + g), 1e-7 * th) << i;
      EXPECT_LT(t.inv_freq[i], ref[i]);
      EXPECT_GT(t.inv_freq[i], ref[i] / 8.0f);
      mixed++;
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(mixed, 0);
  // frequencies stay decreasing, so the mixed band joins the two others without a jump back
  for (int i = 1; i < d / 2; i++) EXPECT_LT(t.inv_freq[i], t.inv_freq[i - 1]) << i;
  // orig = L overrides L_train
  s.original_context = 8192;
  EXPECT_EQ(rope_tables(s, d, base, 131072, 8192).inv_freq, t.inv_freq);
}

TEST(RopeScaling, Llama3LowEqualsHighIsAStep) {
  // hi == lo: no mixed band (HF's smooth factor would be 0/0); wavelengths >= L / lo are divided by s, the rest
  // kept. Then a band of width 1e-9 around it gives the same table: the step is the limit of the ramp.
  const int d = 64;
  const double base = 10000.0, L = 512.0;
  for (double lo : {1.0, 2.0, 4.0}) {
    auto s = make(RopeScalingType::llama3, 4.0);
    s.low_freq_factor = lo;
    s.high_freq_factor = lo;
    ASSERT_NO_THROW(s.validate());
    const auto t = rope_tables(s, d, base, 512, 512);
    const auto ref = rope_inv_freq(d, base);
    int below = 0, above = 0;
    for (int i = 0; i < d / 2; i++) {
      ASSERT_TRUE(std::isfinite(t.inv_freq[i])) << i;
      const double th = std::pow(base, -2.0 * i / d);
      if (2.0 * std::numbers::pi / th >= L / lo) {
        EXPECT_NEAR(t.inv_freq[i], th / 4.0, 1e-7 * th) << i;
        above++;
      } else {
        EXPECT_EQ(t.inv_freq[i], ref[i]) << i;
        below++;
      }
    }
    EXPECT_GT(below, 0);
    EXPECT_GT(above, 0);
    auto near = s;
    near.high_freq_factor = lo * (1.0 + 1e-9);
    EXPECT_EQ(rope_tables(near, d, base, 512, 512).inv_freq, t.inv_freq) << lo;
  }
}

TEST(RopeScaling, LongropeAllOnesEqualsNone) {
  for (int d : {8, 96})
    for (double s : {1.0, 4.0, 32.0}) {
      const std::vector<double> ones(static_cast<std::size_t>(d / 2), 1.0);
      const auto lr = longrope(s, ones, ones);
      for (int seq_len : {1, 4096, 4097, 131072}) {
        const auto t = rope_tables(lr, d, 10000.0, 4096, seq_len);
        EXPECT_EQ(t.inv_freq, rope_inv_freq(d, 10000.0)) << d << " " << s << " " << seq_len;
        // the default attention factor: sqrt(1 + ln s / ln L), 1 at s = 1
        EXPECT_NEAR(t.attention_factor, std::sqrt(1.0 + std::log(s) / std::log(4096.0)), 1e-15);
      }
    }
}

TEST(RopeScaling, LongropeSwitchesAboveTheOriginalLength) {
  const std::vector<double> sf = {1.0, 1.25, 1.5, 2.0}, lf = {1.0, 2.0, 4.0, 8.0};
  auto lr = longrope(8.0, sf, lf);
  lr.original_context = 512;
  EXPECT_TRUE(lr.depends_on_length());
  const auto ref = rope_inv_freq(8, 10000.0);
  for (int seq_len : {0, 1, 511, 512, 513, 4096}) {
    const auto t = rope_tables(lr, 8, 10000.0, 4096, seq_len);  // orig 512 overrides L_train 4096
    const auto& e = seq_len > 512 ? lf : sf;
    for (int i = 0; i < 4; i++) EXPECT_NEAR(t.inv_freq[i], ref[i] / e[i], 1e-7 * ref[i]) << seq_len << " " << i;
    EXPECT_NEAR(t.attention_factor, std::sqrt(1.0 + std::log(8.0) / std::log(512.0)), 1e-15);
  }
  lr.attention_factor = 1.5;
  EXPECT_EQ(rope_tables(lr, 8, 10000.0, 4096, 100).attention_factor, 1.5);
  // divisors are the factors themselves
  const auto div = rope_freq_divisors(lr, 8, 10000.0, 4096, 4096);
  for (int i = 0; i < 4; i++) EXPECT_NEAR(div[i], lf[i], 1e-12 * lf[i]);
  // the lists must have head_dim / 2 numbers each
  expect_message<ConfigError>([&] { rope_tables(lr, 16, 10000.0, 4096, 100); },
                              {"short_factor", "4 numbers", "head_dim / 2 = 8"});
  auto bad = lr;
  bad.short_factor = {1.0, 1.0, 1.0, 1.0};
  bad.long_factor = {1.0, 1.0, 1.0, 1.0, 1.0};
  expect_message<ConfigError>([&] { bad.validate(); }, {"short_factor has 4", "long_factor 5"});
}

TEST(RopeScaling, YarnMscale) {
  // mscale == mscale_all_dim: attention factor exactly 1, frequencies as plain yarn
  for (double m : {0.707, 1.0, 2.0})
    for (double s : {2.0, 40.0}) {
      auto y = make(RopeScalingType::yarn, s);
      y.mscale = m;
      y.mscale_all_dim = m;
      const auto t = rope_tables(y, 64, 10000.0, 4096, 4096);
      EXPECT_EQ(t.attention_factor, 1.0) << m << " " << s;
      EXPECT_EQ(t.inv_freq, rope_tables(make(RopeScalingType::yarn, s), 64, 10000.0, 4096, 4096).inv_freq);
    }
  // otherwise the ratio (0.1 m ln s + 1) / (0.1 m' ln s + 1); DeepSeek-V2: s 40, mscale 1, mscale_all_dim 0.8
  auto y = make(RopeScalingType::yarn, 40.0);
  y.mscale = 1.0;
  y.mscale_all_dim = 0.8;
  EXPECT_NEAR(rope_tables(y, 64, 10000.0, 4096, 4096).attention_factor,
              (0.1 * std::log(40.0) + 1.0) / (0.08 * std::log(40.0) + 1.0), 1e-15);
  // s <= 1: both are 1
  y.factor = 1.0;
  EXPECT_EQ(rope_tables(y, 64, 10000.0, 4096, 4096).attention_factor, 1.0);
}

TEST(RopeScaling, YarnWithoutTruncation) {
  // hd 8, base 10000, L 512: corr_dim(32) = 8 ln(512/(64 pi)) / (2 ln 10000) = 0.40594, corr_dim(1) = 1.91109;
  // without floor / ceil the ramp runs from 0.40594 to 1.91109: pair 0 kept (0 < low), pair 1 at
  // (1 - 0.40594) / 1.50515, pairs 2 and 3 divided by s.
  auto y = make(RopeScalingType::yarn, 4.0);
  y.truncate = false;
  const auto ref = rope_inv_freq(8, 10000.0);
  const auto t = rope_tables(y, 8, 10000.0, 512, 512);
  EXPECT_EQ(t.inv_freq[0], ref[0]);
  const double lo = 8 * std::log(512.0 / (64 * std::numbers::pi)) / (2 * std::log(10000.0));
  const double hi = 8 * std::log(512.0 / (2 * std::numbers::pi)) / (2 * std::log(10000.0));
  EXPECT_NEAR(lo, 0.40594, 1e-5);
  EXPECT_NEAR(hi, 1.91109, 1e-5);
  const double ramp = (1.0 - lo) / (hi - lo);
  EXPECT_NEAR(t.inv_freq[1], 0.1 * (ramp / 4 + (1 - ramp)), 1e-7 * 0.1);
  EXPECT_NEAR(t.inv_freq[2], 0.01 / 4, 1e-7 * 0.0025);
  EXPECT_NEAR(t.inv_freq[3], 0.001 / 4, 1e-7 * 0.00025);
  // truncation moved the ramp (pair 1 at 0.5 with it)
  EXPECT_NE(t.inv_freq[1], rope_tables(make(RopeScalingType::yarn, 4.0), 8, 10000.0, 512, 512).inv_freq[1]);
  EXPECT_NEAR(t.attention_factor, 0.1 * std::log(4.0) + 1.0, 1e-15);
}

TEST(RopeScaling, DependsOnLength) {
  for (auto t : kAllTypes)
    EXPECT_EQ(make(t, 2.0).depends_on_length(), t == RopeScalingType::dynamic_ntk) << rope_scaling_type_name(t);
  EXPECT_FALSE(make(RopeScalingType::llama3, 2.0).depends_on_length());
  EXPECT_TRUE(longrope(2.0, {1.0}, {1.0}).depends_on_length());
}

TEST(RopeScaling, FreqDivisors) {
  for (double s : {2.0, 8.0}) {
    for (double v : rope_freq_divisors(make(RopeScalingType::linear, s), 64, 10000.0, 512, 512))
      EXPECT_NEAR(v, s, 1e-12);
    for (double v : rope_freq_divisors(make(RopeScalingType::none, 1.0), 64, 10000.0, 512, 512)) EXPECT_EQ(v, 1.0);
    // llama3: 1 on the kept band, s on the divided one, in between otherwise; theta_i / divisor_i is the table
    const auto l3 = make(RopeScalingType::llama3, s);
    const auto div = rope_freq_divisors(l3, 64, 10000.0, 512, 512);
    const auto t = rope_tables(l3, 64, 10000.0, 512, 512);
    EXPECT_NEAR(div.front(), 1.0, 1e-12);
    EXPECT_NEAR(div.back(), s, 1e-12 * s);
    for (std::size_t i = 0; i < div.size(); i++) {
      EXPECT_GE(div[i], 1.0 - 1e-12);
      EXPECT_LE(div[i], s * (1 + 1e-12));
      const double th = std::pow(10000.0, -2.0 * static_cast<double>(i) / 64);
      EXPECT_NEAR(th / div[i], t.inv_freq[i], 1e-7 * th) << i;
    }
  }
}

TEST(RopeScaling, NewSpecsRoundTrip) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"llama3:8", "llama3:8,low=1,high=4"},
      {"llama3:8,low=1,high=4,orig=8192", "llama3:8,orig=8192,low=1,high=4"},
      {"llama3:4,low=2,high=2", "llama3:4,low=2,high=2"},
      {"yarn:4,mscale=0.707,mscale_all_dim=0.707,truncate=0", "yarn:4,mscale=0.707,mscale_all_dim=0.707,truncate=0"},
      {"yarn:4,truncate=1", "yarn:4"},
      {"yarn-paper:4,orig=64,beta_fast=16,mscale=1,mscale_all_dim=2",
       "yarn-paper:4,orig=64,beta_fast=16,mscale=1,mscale_all_dim=2"},
      {"yarn:4,truncate=false,orig=4096", "yarn:4,orig=4096,truncate=0"},
      {"longrope:32,orig=4096,short=1:1.02:1.5:2,long=1:2:4:8",
       "longrope:32,orig=4096,short=1:1.02:1.5:2,long=1:2:4:8"},
      {"longrope:4,short=1:1,long=2:3,attention_factor=1.2", "longrope:4,attention_factor=1.2,short=1:1,long=2:3"},
  };
  for (const auto& [spec, want] : cases) expect_round_trip(spec, want);
  const auto l = RopeScaling::parse("longrope:32,orig=4096,short=1:1.02:1.5:2,long=1:2:4:8", "--rope-scaling");
  EXPECT_EQ(l.type, RopeScalingType::longrope);
  EXPECT_EQ(l.short_factor, (std::vector<double>{1.0, 1.02, 1.5, 2.0}));
  EXPECT_EQ(l.long_factor, (std::vector<double>{1.0, 2.0, 4.0, 8.0}));
  EXPECT_EQ(l.to_json(), nlohmann::json::parse(R"({"type": "longrope", "factor": 32, "original_context": 4096,
      "short_factor": [1, 1.02, 1.5, 2], "long_factor": [1, 2, 4, 8]})"));
  const auto y = RopeScaling::parse("yarn:4,mscale=0.707,mscale_all_dim=0.707,truncate=0", "--rope-scaling");
  EXPECT_EQ(y.to_json(), nlohmann::json::parse(R"({"type": "yarn", "factor": 4, "original_context": 0, "beta_fast": 32,
      "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707, "truncate": false})"));
  EXPECT_FALSE(y.truncate);
  EXPECT_EQ(RopeScaling::parse("llama3:8", "--x").to_json(),
            nlohmann::json::parse(R"({"type": "llama3", "factor": 8, "original_context": 0, "low_freq_factor": 1,
                "high_freq_factor": 4})"));

  // @PATH lists: a JSON array in a file
  test::TempDir dir;
  test::write_text(dir / "short.json", "[1.0, 1.02, 1.5, 2]");
  test::write_text(dir / "long.json", " [1, 2, 4, 8]\n");
  const auto f = RopeScaling::parse("longrope:32,orig=4096,short=@" + (dir / "short.json").string() + ",long=@" +
                                        (dir / "long.json").string(),
                                    "--rope-scaling");
  EXPECT_EQ(f, l);
  expect_message<InputError>(
      [&] { RopeScaling::parse("longrope:2,short=@" + (dir / "none.json").string() + ",long=1", "--rope-scaling"); },
      {"--rope-scaling", "none.json", "short"});
  test::write_text(dir / "obj.json", R"({"short_factor": [1, 2]})");
  expect_message<InputError>(
      [&] { RopeScaling::parse("longrope:2,short=@" + (dir / "obj.json").string() + ",long=1:2", "--rope-scaling"); },
      {"--rope-scaling", "obj.json", "array of numbers"});
  test::write_text(dir / "text.json", "1, 2");
  expect_message<InputError>(
      [&] { RopeScaling::parse("longrope:2,short=@" + (dir / "text.json").string() + ",long=1:2", "--rope-scaling"); },
      {"--rope-scaling", "text.json", "not JSON"});
}

TEST(RopeScaling, BadNewSpecsNameTheField) {
  const std::string forms = "llama3:S, longrope:S";
  auto bad = [&](const std::string& spec, const std::string& why) {
    SCOPED_TRACE(spec);
    expect_message<ConfigError>([&] { RopeScaling::parse(spec, "--rope-scaling"); },
                                {"--rope-scaling", "'" + spec + "'", forms, why});
  };
  bad("llama3", "missing the factor");
  bad("llama3:8,low=2,high=1", "high_freq_factor >= low_freq_factor > 0");
  bad("llama3:8,low=0", "high_freq_factor >= low_freq_factor > 0");
  bad("llama3:8,low=x", "bad value 'x' for low");
  bad("yarn:4,low=2", "low_freq_factor and high_freq_factor apply only to llama3");
  bad("yarn:4,mscale=0.707", "mscale and mscale_all_dim are used together");
  bad("yarn:4,mscale_all_dim=0.707", "used together");
  bad("yarn:4,mscale=1,mscale_all_dim=1,attention_factor=1.2", "attention_factor 1.2 and mscale");
  bad("yarn:4,mscale=-1,mscale_all_dim=1", "mscale and mscale_all_dim must be >= 0");
  bad("yarn:4,truncate=2", "bad value '2' for truncate");
  bad("yarn-paper:4,truncate=0", "truncate applies only to yarn");
  bad("linear:4,mscale=1,mscale_all_dim=1", "apply only to yarn");
  bad("llama3:4,attention_factor=1.2", "attention_factor applies only to yarn, yarn-paper and longrope");
  bad("longrope:4", "needs both short_factor and long_factor");
  bad("longrope:4,short=1:1", "needs both");
  bad("longrope:4,short=1:1,long=1", "short_factor has 2 numbers but long_factor 1");
  bad("longrope:4,short=1:0,long=1:1", "short_factor holds 0");
  bad("longrope:4,short=1::1,long=1:1:1", "bad value '1::1' for short");
  bad("longrope:4,short=,long=1", "bad value '' for short");
  bad("longrope:4,short=1:x,long=1:1", "bad value");
  bad("linear:4,short=1,long=1", "short_factor and long_factor apply only to longrope");
  bad("longrope:0.5,short=1,long=1", "factor must be a finite number >= 1");

  auto bad_json = [&](const std::string& text, const std::string& field) {
    SCOPED_TRACE(text);
    expect_message<InputError>([&] { RopeScaling::from_json(nlohmann::json::parse(text), "run/config.json"); },
                               {"run/config.json", field});
  };
  bad_json(R"({"type": "yarn", "factor": 4, "truncate": 0})", "rope_scaling.truncate");
  bad_json(R"({"type": "longrope", "factor": 4, "short_factor": [1, "2"], "long_factor": [1, 2]})",
           "rope_scaling.short_factor");
  bad_json(R"({"type": "longrope", "factor": 4, "short_factor": [], "long_factor": [1]})", "rope_scaling.short_factor");
  bad_json(R"({"type": "longrope", "factor": 4, "short_factor": 1, "long_factor": [1]})", "rope_scaling.short_factor");
  bad_json(R"({"type": "llama3", "factor": 4, "low_freq_factor": "1"})", "rope_scaling.low_freq_factor");
  bad_json(R"({"type": "llama3", "factor": 4, "low_freq_factor": 4, "high_freq_factor": 1})", "high_freq_factor");
  bad_json(R"({"type": "yarn", "factor": 4, "mscale": 1})", "mscale_all_dim");
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
  int newer = 0;
  for (const auto& c : cases) {
    RopeScaling s;
    if (c.contains("stretch")) {  // the newer cases spell the scaling in RopeScaling's JSON form
      s = RopeScaling::from_json(c.at("stretch"), "hf_rope.json: " + c.at("name").get<std::string>());
      newer++;
    } else {
      s.type = type_of(c.at("type").get<std::string>());
      s.factor = c.at("factor").get<double>();
      if (c.contains("beta_fast")) s.beta_fast = c.at("beta_fast").get<double>();
      if (c.contains("beta_slow")) s.beta_slow = c.at("beta_slow").get<double>();
    }
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
  EXPECT_GE(newer, 30);  // llama3, longrope, yarn's new parameters, dynamic at several lengths
}

}  // namespace
}  // namespace stretch
