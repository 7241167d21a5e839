// LoRA adapters (model/lora.hpp): step 0 is the base model, the adapter's gradients are the chain rule through
// the merged weight (W + s B A, whose gradient the full backward pass gives) and finite differences, frozen tensors
// get no gradient, merging folds the adapter in, and the config refuses bad values naming the field.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "model/decoder.hpp"
#include "model/lora.hpp"
#include "model/params.hpp"
#include "model/transformer.hpp"

namespace stretch {
namespace {

ModelConfig tiny(Arch arch, PositionMethod m) {
  ModelConfig c;
  c.arch = arch;
  c.vocab_size = 32;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_embd = 16;
  c.mlp_hidden = 24;
  c.block_size = 8;
  c.position = m;
  if (arch == Arch::llama) {
    c.bias = false;
    c.n_kv_head = 2;  // grouped-query attention: k and v blocks narrower than q
  }
  return c;
}

ModelConfig with_lora(ModelConfig c, int rank, const char* targets, double alpha, float dropout = 0.0f) {
  c.lora.rank = rank;
  c.lora.alpha = alpha;
  c.lora.targets = parse_lora_targets(targets, c.arch, "test");
  c.lora.dropout = dropout;
  return c;
}

const char* all_targets(Arch a) { return a == Arch::llama ? "q,k,v,o,gate,up,down" : "q,k,v,o,up,down"; }

// B != 0, so the adapter changes the model (B starts at zero).
void randomize_adapter(Transformer& m, std::uint64_t seed) {
  Rng rng(seed);
  for (const ParamSpec& s : m.specs())
    if (s.kind == ParamKind::lora_b)
      for (std::size_t i = 0; i < s.numel(); i++) m.params()[s.offset + i] = 0.3f * rng.normal();
}

const std::vector<std::int32_t> kX = {1, 5, 9, 2, 7, 7, 3, 0, 4, 4, 12, 31, 8, 6, 2, 19};
const std::vector<std::int32_t> kY = {5, 9, 2, 7, 7, 3, 0, 4, 4, 12, 31, 8, 6, 2, 19, 1};

double train_loss(Transformer& m, bool backward, std::uint64_t drop_seed = 0) {
  ForwardOptions fo;
  fo.need_grad = true;
  fo.training = true;
  Rng rng(drop_seed);
  fo.rng = &rng;
  const double loss = m.forward(kX.data(), kY.data(), nullptr, 2, 8, fo);
  if (backward) m.backward();
  return loss;
}

struct Case {
  Arch arch;
  PositionMethod method;
};
class LoraEvery : public ::testing::TestWithParam<Case> {};

TEST_P(LoraEvery, AtStepZeroTheAdaptedModelIsTheBaseBitForBit) {
  const Case k = GetParam();
  Transformer base(tiny(k.arch, k.method));
  Transformer adapted(with_lora(tiny(k.arch, k.method), 4, all_targets(k.arch), 8.0));
  base.init_weights(11);
  adapted.init_weights(11);  // the adapter's tensors are drawn after every base tensor: the base is the same
  const std::size_t nb = base.params().size();
  for (std::size_t i = 0; i < nb; i++) ASSERT_EQ(base.params()[i], adapted.params()[i]) << i;
  bool a_drawn = false;
  for (const ParamSpec& s : adapted.specs())
    for (std::size_t i = 0; i < s.numel(); i++) {
      const float v = adapted.params()[s.offset + i];
      if (s.kind == ParamKind::lora_b) {
        ASSERT_EQ(v, 0.0f) << s.name;
      }
      if (s.kind == ParamKind::lora_a) {
        ASSERT_LE(std::abs(v), 1.0f / std::sqrt(static_cast<float>(s.shape[1]))) << s.name;
        a_drawn |= v != 0.0f;
      }
    }
  EXPECT_TRUE(a_drawn);
  ForwardOptions fo;
  fo.keep_logits = true;
  base.forward(kX.data(), kY.data(), nullptr, 2, 8, fo);
  std::vector<float> lb(base.logits(), base.logits() + 16 * 32);
  adapted.forward(kX.data(), kY.data(), nullptr, 2, 8, fo);
  for (int i = 0; i < 16 * 32; i++) ASSERT_EQ(lb[i], adapted.logits()[i]) << i;
  EXPECT_EQ(train_loss(base, false), train_loss(adapted, false));
}

// The adapted layer computes x (W + s B A)^T, so with G = dL/dW' of the merged model:
//   dL/dB = s G[rows] A^T,   dL/dA = s B^T G[rows].
// The merged model's G comes from the full backward pass (itself checked against PyTorch in parity_test).
TEST_P(LoraEvery, AdapterGradientsAreTheChainRuleThroughTheMergedWeight) {
  const Case k = GetParam();
  Transformer adapted(with_lora(tiny(k.arch, k.method), 3, all_targets(k.arch), 6.0));
  adapted.init_weights(5);
  randomize_adapter(adapted, 9);
  auto merged = merge_lora(adapted);
  adapted.zero_grad();
  merged->zero_grad();
  const double la = train_loss(adapted, true), lm = train_loss(*merged, true);
  EXPECT_NEAR(la, lm, 1e-5 * std::abs(lm));
  const ModelConfig& c = adapted.config();
  const ConstParamView p = bind_param_view(c, adapted.specs(), std::as_const(adapted).params().data());
  const ConstParamView g = bind_param_view(c, adapted.specs(), std::as_const(adapted).grads().data());
  const ConstParamView gm = bind_param_view(merged->config(), merged->specs(), std::as_const(*merged).grads().data());
  const int R = c.lora.rank;
  const double s = c.lora.alpha / R;
  for (int l = 0; l < c.n_layer; l++)
    for (const LoraSite& site : lora_sites(c)) {
      const int t = static_cast<int>(site.target);
      const ConstLayerView& w = gm.layers[l];
      const float* G = lora_base_matrix(w, site.matrix);
      G += static_cast<std::size_t>(site.row0) * site.in;
      const float *A = p.lora_a[l][t], *B = p.lora_b[l][t];
      double scale = 0;
      std::vector<double> dA(static_cast<std::size_t>(R) * site.in, 0.0), dB(static_cast<std::size_t>(site.rows) * R, 0.0);
      for (int o = 0; o < site.rows; o++)
        for (int i = 0; i < site.in; i++) {
          const double gv = G[static_cast<std::size_t>(o) * site.in + i];
          for (int r = 0; r < R; r++) {
            dB[static_cast<std::size_t>(o) * R + r] += s * gv * A[static_cast<std::size_t>(r) * site.in + i];
            dA[static_cast<std::size_t>(r) * site.in + i] += s * B[static_cast<std::size_t>(o) * R + r] * gv;
          }
        }
      for (double v : dA) scale = std::max(scale, std::abs(v));
      for (double v : dB) scale = std::max(scale, std::abs(v));
      ASSERT_GT(scale, 1e-6) << "layer " << l << " " << to_string(site.target) << ": no gradient reaches the adapter";
      for (std::size_t i = 0; i < dA.size(); i++)
        ASSERT_NEAR(g.lora_a[l][t][i], dA[i], 2e-4 * scale) << "dA, layer " << l << " " << to_string(site.target);
      for (std::size_t i = 0; i < dB.size(); i++)
        ASSERT_NEAR(g.lora_b[l][t][i], dB[i], 2e-4 * scale) << "dB, layer " << l << " " << to_string(site.target);
    }
}

// Central differences of the training loss (adapter dropout on: the masks are the same for a reseeded generator).
TEST_P(LoraEvery, AdapterGradientsMatchFiniteDifferencesWithDropout) {
  const Case k = GetParam();
  Transformer m(with_lora(tiny(k.arch, k.method), 2, all_targets(k.arch), 4.0, 0.25f));
  m.init_weights(21);
  randomize_adapter(m, 22);
  m.zero_grad();
  train_loss(m, true, 77);
  Rng pick(3);
  int checked = 0;
  for (const ParamSpec& s : m.specs()) {
    if (s.kind != ParamKind::lora_a && s.kind != ParamKind::lora_b) continue;
    for (int rep = 0; rep < 3; rep++) {
      const std::size_t i = s.offset + static_cast<std::size_t>(pick.uniform() * static_cast<float>(s.numel()));
      const float keep = m.params()[i], h = 1e-2f;
      m.params()[i] = keep + h;
      const double up = train_loss(m, false, 77);
      m.params()[i] = keep - h;
      const double down = train_loss(m, false, 77);
      m.params()[i] = keep;
      const double fd = (up - down) / (2.0 * h), an = m.grads()[i];
      EXPECT_NEAR(an, fd, 2e-3 + 2e-2 * std::abs(fd)) << s.name << " element " << i - s.offset;
      checked++;
    }
  }
  EXPECT_GT(checked, 20);
}

// A frozen tensor's gradient is never written (backward computes none); zero_grad leaves it alone.
TEST_P(LoraEvery, FrozenTensorsGetNoGradient) {
  const Case k = GetParam();
  Transformer m(with_lora(tiny(k.arch, k.method), 2, "q,v", 2.0));
  m.init_weights(1);
  randomize_adapter(m, 2);
  std::vector<char> trainable(m.specs().size(), 0);
  for (std::size_t i = 0; i < m.specs().size(); i++)
    trainable[i] = m.specs()[i].kind == ParamKind::lora_a || m.specs()[i].kind == ParamKind::lora_b ||
                   m.specs()[i].kind == ParamKind::norm;
  m.set_trainable(trainable);
  std::fill(m.grads().data(), m.grads().data() + m.grads().size(), 7.0f);
  m.zero_grad();
  train_loss(m, true);
  for (std::size_t i = 0; i < m.specs().size(); i++) {
    const ParamSpec& s = m.specs()[i];
    const float* g = m.grads().data() + s.offset;
    double norm = 0;
    bool sentinel = true;
    for (std::size_t j = 0; j < s.numel(); j++) {
      norm += std::abs(g[j]);
      sentinel &= g[j] == 7.0f;
    }
    if (trainable[i]) {
      EXPECT_FALSE(sentinel) << s.name;
      EXPECT_GT(norm, 0.0) << s.name;
    } else {
      EXPECT_TRUE(sentinel) << s.name << " is frozen, yet its gradient was written";
    }
  }
}

// merge_lora: W + s B A (checked against a plain double loop here), the same logits, no adapter left.
TEST_P(LoraEvery, MergedModelIsTheBasePlusTheAdapter) {
  const Case k = GetParam();
  Transformer m(with_lora(tiny(k.arch, k.method), 4, all_targets(k.arch), 16.0));
  m.init_weights(31);
  randomize_adapter(m, 32);
  auto merged = merge_lora(m);
  EXPECT_FALSE(merged->config().lora.enabled());
  const ModelConfig& c = m.config();
  const ConstParamView p = bind_param_view(c, m.specs(), std::as_const(m).params().data());
  const ConstParamView q = bind_param_view(merged->config(), merged->specs(), std::as_const(*merged).params().data());
  const double s = c.lora.alpha / c.lora.rank;
  for (int l = 0; l < c.n_layer; l++)
    for (const LoraSite& site : lora_sites(c)) {
      const int t = static_cast<int>(site.target);
      const float *W0 = lora_base_matrix(p.layers[l], site.matrix), *W1 = lora_base_matrix(q.layers[l], site.matrix);
      for (int o = 0; o < site.rows; o++)
        for (int i = 0; i < site.in; i++) {
          double ba = 0;
          for (int r = 0; r < c.lora.rank; r++)
            ba += static_cast<double>(p.lora_b[l][t][o * c.lora.rank + r]) * p.lora_a[l][t][r * site.in + i];
          const std::size_t at = static_cast<std::size_t>(site.row0 + o) * site.in + i;
          ASSERT_NEAR(W1[at], W0[at] + s * ba, 1e-6) << to_string(site.target) << " row " << o;
        }
    }
  ForwardOptions fo;
  fo.keep_logits = true;
  m.forward(kX.data(), nullptr, nullptr, 2, 8, fo);
  std::vector<float> la(m.logits(), m.logits() + 16 * 32);
  merged->forward(kX.data(), nullptr, nullptr, 2, 8, fo);
  double diff = 0, mag = 0;
  for (int i = 0; i < 16 * 32; i++) {
    diff = std::max(diff, static_cast<double>(std::abs(la[i] - merged->logits()[i])));
    mag = std::max(mag, static_cast<double>(std::abs(la[i])));
  }
  EXPECT_LT(diff, 1e-5 * std::max(1.0, mag));
  // and the adapter did change the model
  Transformer base(tiny(k.arch, k.method));
  std::copy(m.params().data(), m.params().data() + base.params().size(), base.params().data());
  base.forward(kX.data(), nullptr, nullptr, 2, 8, fo);
  double change = 0;
  for (int i = 0; i < 16 * 32; i++) change = std::max(change, static_cast<double>(std::abs(la[i] - base.logits()[i])));
  EXPECT_GT(change, 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Families, LoraEvery,
                         ::testing::Values(Case{Arch::gpt, PositionMethod::alibi}, Case{Arch::gpt, PositionMethod::t5},
                                           Case{Arch::gpt, PositionMethod::learned},
                                           Case{Arch::llama, PositionMethod::rope}),
                         [](const auto& info) {
                           return std::string(to_string(info.param.arch)) + "_" +
                                  std::string(to_string(info.param.method));
                         });

TEST(Lora, ConfigRefusesBadValuesNamingTheField) {
  auto expect_error = [](const ModelConfig& c, const std::string& field) {
    try {
      c.validate();
      ADD_FAILURE() << "accepted, expected an error naming " << field;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  ModelConfig c = with_lora(tiny(Arch::gpt, PositionMethod::alibi), 4, "q,v", 8.0);
  EXPECT_NO_THROW(c.validate());
  ModelConfig bad = c;
  bad.lora.alpha = 0.0;
  expect_error(bad, "lora.alpha");
  bad = c;
  bad.lora.alpha = -1.0;
  expect_error(bad, "lora.alpha");
  bad = c;
  bad.lora.targets = 1u << static_cast<int>(LoraTarget::gate);
  expect_error(bad, "lora.targets");
  bad = c;
  bad.lora.targets = 0;
  expect_error(bad, "lora.targets");
  bad = c;
  bad.lora.dropout = 1.0f;
  expect_error(bad, "lora.dropout");
  bad = c;
  bad.lora.rank = -2;
  expect_error(bad, "lora.rank");
  EXPECT_THROW(parse_lora_targets("q,gate", Arch::gpt, "--lora-targets"), UsageError);
  EXPECT_THROW(parse_lora_targets("q,q", Arch::llama, "--lora-targets"), UsageError);
  EXPECT_THROW(parse_lora_targets("q,,v", Arch::llama, "--lora-targets"), UsageError);
  EXPECT_THROW(parse_lora_targets("", Arch::llama, "--lora-targets"), UsageError);
  try {
    parse_lora_targets("q,wq", Arch::llama, "--lora-targets");
    ADD_FAILURE();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("--lora-targets: unknown target 'wq'"), std::string::npos) << e.what();
  }
}

TEST(Lora, ConfigRoundTripsThroughJson) {
  ModelConfig c = with_lora(tiny(Arch::llama, PositionMethod::rope), 8, "q,k,v,o,down", 16.0, 0.05f);
  const ModelConfig back = ModelConfig::from_json(c.to_json(), "test");
  EXPECT_EQ(back.lora, c.lora);
  EXPECT_EQ(back.lora.targets_string(), "q,k,v,o,down");
  auto j = c.to_json();
  j["lora"]["rank"] = 0;
  EXPECT_THROW(ModelConfig::from_json(j, "config.json"), InputError);
  EXPECT_FALSE(ModelConfig::from_json(tiny(Arch::gpt, PositionMethod::alibi).to_json(), "t").lora.enabled());
}

TEST(Lora, TheDecoderRefusesAnUnmergedAdapter) {
  Transformer m(with_lora(tiny(Arch::gpt, PositionMethod::alibi), 2, "q", 2.0));
  EXPECT_THROW(Decoder(m, 8, false), ConfigError);
}

}  // namespace
}  // namespace stretch
