// Model-level properties that parity with PyTorch does not cover: errors, causality, positions as data.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "kernels/matmul.hpp"
#include "model/params.hpp"
#include "model/transformer.hpp"

namespace stretch {
namespace {

ModelConfig tiny(PositionMethod m) {
  ModelConfig c;
  c.vocab_size = 32;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  c.mlp_hidden = 32;
  c.block_size = 8;
  c.position = m;
  return c;
}

TEST(Transformer, ConfigErrorsNameTheField) {
  ModelConfig c = tiny(PositionMethod::alibi);
  c.n_head = 3;
  try {
    Transformer g(c);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("n_head"), std::string::npos) << e.what();
  }
}

// Every tensor knows where it sits (the one table of model/params.cpp): its block, or before / after the blocks;
// the NaN/Inf messages of the trainer say "layer N", "embeddings" or "output" from it.
TEST(Transformer, EveryTensorKnowsItsPlaceFromTheParameterTable) {
  for (Arch arch : {Arch::gpt, Arch::llama}) {
    ModelConfig c = tiny(PositionMethod::t5);
    c.arch = arch;
    c.embed_norm = arch == Arch::gpt;
    if (arch == Arch::llama) c.bias = false;
    const auto specs = param_specs(c);
    int blocks_seen = 0, before = 0, after = 0;
    bool in_blocks = false, past_blocks = false;
    for (const auto& s : specs) {
      const std::string block_prefix = arch == Arch::gpt ? "h." : "layers.";
      if (s.name.rfind(block_prefix, 0) == 0) {
        EXPECT_FALSE(past_blocks) << s.name;
        in_blocks = true;
        ASSERT_EQ(s.place, ParamPlace::block) << s.name;
        EXPECT_EQ(s.name.substr(block_prefix.size(), s.name.find('.', block_prefix.size()) - block_prefix.size()),
                  std::to_string(s.layer));
        EXPECT_EQ(s.where(), "layer " + std::to_string(s.layer));
        blocks_seen = std::max(blocks_seen, s.layer + 1);
      } else if (!in_blocks) {
        EXPECT_EQ(s.place, ParamPlace::embeddings) << s.name;
        EXPECT_EQ(s.layer, -1);
        EXPECT_EQ(s.where(), "embeddings");
        before++;
      } else {
        past_blocks = true;
        EXPECT_EQ(s.place, ParamPlace::output) << s.name;
        EXPECT_EQ(s.where(), "output");
        after++;
      }
    }
    EXPECT_EQ(blocks_seen, c.n_layer);
    EXPECT_GE(before, 2);  // token embeddings and the t5 bias (and gpt's embedding norm)
    EXPECT_GE(after, 1);   // the final norm
  }
}

TEST(Transformer, LearnedPositionsPastTheTableAreAnError) {
  Transformer g(tiny(PositionMethod::learned));
  g.init_weights(1);
  std::vector<std::int32_t> tok(9, 3);
  EXPECT_THROW(g.forward(tok.data(), tok.data(), nullptr, 1, 9), ConfigError);
  EXPECT_NO_THROW(g.forward(tok.data(), tok.data(), nullptr, 1, 8));
}

TEST(Transformer, TokenOutsideTheVocabularyIsAnError) {
  Transformer g(tiny(PositionMethod::none));
  g.init_weights(1);
  std::vector<std::int32_t> tok = {1, 2, 32};
  EXPECT_THROW(g.forward(tok.data(), nullptr, nullptr, 1, 3), InputError);
}

// Under --embed-scale S the tokens enter as S * wte with wte ~ N(0, 1/S^2); a learned position table is drawn
// the same way and enters unscaled (fairseq: tokens * sqrt(d), positions ~ N(0, 1/d)); at S = 1 both are 0.02.
TEST(Transformer, EmbeddingAndPositionTablesAreDrawnWithStdOneOverTheEmbedScale) {
  for (const float scale : {1.0f, 16.0f}) {
    ModelConfig c = tiny(PositionMethod::learned);
    c.vocab_size = 256;
    c.block_size = 256;
    c.n_embd = 64;
    c.mlp_hidden = 128;
    c.embed_scale = scale;
    Transformer g(c);
    g.init_weights(7);
    const float expected = scale == 1.0f ? 0.02f : 1.0f / scale;
    for (const char* name : {"wte", "wpe"}) {
      const auto it = std::find_if(g.specs().begin(), g.specs().end(), [&](const ParamSpec& p) { return p.name == name; });
      ASSERT_NE(it, g.specs().end()) << name;
      double sum = 0, sq = 0;
      const float* w = g.params().data() + it->offset;
      for (std::size_t i = 0; i < it->numel(); i++) {
        sum += w[i];
        sq += static_cast<double>(w[i]) * w[i];
      }
      const double n = static_cast<double>(it->numel()), mean = sum / n;
      const double sd = std::sqrt(sq / n - mean * mean);
      // 16,384 draws: the sample std is within 2% of the true one with overwhelming probability
      EXPECT_NEAR(sd, expected, 0.02 * expected) << name << " at embed_scale " << scale;
    }
  }
}

class EveryMethod : public ::testing::TestWithParam<PositionMethod> {};

TEST_P(EveryMethod, CausalAndBatchIndependent) {
  Transformer g(tiny(GetParam()));
  g.init_weights(3);
  const int T = 8, V = 32;
  std::vector<std::int32_t> a = {1, 5, 9, 2, 7, 7, 3, 0}, b = a;
  b[5] = 30;  // change a later token
  ForwardOptions fo;
  fo.keep_logits = true;
  g.forward(a.data(), nullptr, nullptr, 1, T, fo);
  std::vector<float> la(g.logits(), g.logits() + T * V);
  g.forward(b.data(), nullptr, nullptr, 1, T, fo);
  std::vector<float> lb(g.logits(), g.logits() + T * V);
  for (int i = 0; i < 5 * V; i++) ASSERT_EQ(la[i], lb[i]) << "position " << i / V << " saw the future";
  bool later_differs = false;
  for (int i = 5 * V; i < T * V; i++) later_differs |= la[i] != lb[i];
  EXPECT_TRUE(later_differs);
  // batch of two: each row equals its own single-row forward
  std::vector<std::int32_t> ab = a;
  ab.insert(ab.end(), b.begin(), b.end());
  g.forward(ab.data(), nullptr, nullptr, 2, T, fo);
  for (int i = 0; i < T * V; i++) {
    ASSERT_NEAR(g.logits()[i], la[i], 1e-5f);
    ASSERT_NEAR(g.logits()[T * V + i], lb[i], 1e-5f);
  }
}

TEST_P(EveryMethod, TrainingLossEqualsEvaluationLossOfTheSameWindow) {
  Transformer g(tiny(GetParam()));
  g.init_weights(4);
  std::vector<std::int32_t> x = {1, 5, 9, 2, 7, 7, 3, 0}, y = {5, 9, 2, 7, 7, 3, 0, 4};
  ForwardOptions train;
  train.need_grad = true;
  const double lt = g.forward(x.data(), y.data(), nullptr, 1, 8, train);
  g.backward();
  const double le = g.forward(x.data(), y.data(), nullptr, 1, 8);
  // evaluation uses the tiled attention kernel, training the plain one: equal up to float summation order
  EXPECT_NEAR(lt, le, 1e-6 * std::abs(lt));
  double sum = 0;
  for (int i = 0; i < 8; i++) sum += g.token_losses()[i];
  EXPECT_NEAR(sum / 8, le, 1e-6);
}

// Training with the tiled (flash-style) attention gives the loss and every gradient of the materialized kernels,
// for gpt and llama (GQA), with a sliding window, over a length that spans several tiles.
TEST_P(EveryMethod, TiledTrainingAttentionEqualsMaterialized) {
  for (Arch arch : {Arch::gpt, Arch::llama})
    for (int window : {0, 40}) {
      ModelConfig c = tiny(GetParam());
      c.arch = arch;
      c.n_head = 4;
      c.n_embd = 64;
      c.block_size = 150;
      c.attn_window = window;
      if (arch == Arch::llama) {
        c.bias = false;
        c.n_kv_head = 2;
      }
      Transformer a(c), b(c);
      a.init_weights(9);
      std::copy_n(a.params().data(), a.params().size(), b.params().data());
      a.set_training_attention(TrainingAttention::materialized);
      b.set_training_attention(TrainingAttention::tiled);
      ASSERT_FALSE(a.tiled_training(2, 150));
      ASSERT_TRUE(b.tiled_training(2, 150));
      std::vector<std::int32_t> x(300), y(300);
      for (int i = 0; i < 300; i++) {
        x[i] = (i * 7 + 3) % 32;
        y[i] = (i * 11 + 5) % 32;
      }
      ForwardOptions train;
      train.need_grad = true;
      a.zero_grad();
      b.zero_grad();
      const double la = a.forward(x.data(), y.data(), nullptr, 2, 150, train);
      a.backward();
      const double lb = b.forward(x.data(), y.data(), nullptr, 2, 150, train);
      b.backward();
      const std::string what = std::string(to_string(arch)) + " window " + std::to_string(window);
      EXPECT_NEAR(la, lb, 1e-6 * std::abs(la)) << what;
      double num = 0, den = 0;
      for (std::size_t i = 0; i < a.grads().size(); i++) {
        num = std::max(num, static_cast<double>(std::abs(a.grads().data()[i] - b.grads().data()[i])));
        den = std::max(den, static_cast<double>(std::abs(a.grads().data()[i])));
      }
      EXPECT_LT(num, 1e-4 * den) << what << ": max gradient difference " << num << " of " << den;
    }
}

// Mixed precision: the loss and gradients stay close to fp32's, and the products really see bf16 weights (a
// change of a weight below bf16's resolution changes nothing, one above it does).
TEST_P(EveryMethod, Bf16ProductsStayCloseToFp32) {
  ModelConfig c = tiny(GetParam());
  c.n_embd = 64;
  c.n_head = 4;
  c.block_size = 32;
  Transformer a(c), b(c);
  a.init_weights(3);
  std::copy_n(a.params().data(), a.params().size(), b.params().data());
  b.set_precision(Precision::bf16);
  std::vector<std::int32_t> x(64), y(64);
  for (int i = 0; i < 64; i++) {
    x[i] = (i * 5 + 1) % 32;
    y[i] = (i * 3 + 2) % 32;
  }
  ForwardOptions train;
  train.need_grad = true;
  a.zero_grad();
  b.zero_grad();
  const double la = a.forward(x.data(), y.data(), nullptr, 2, 32, train);
  a.backward();
  const double lb = b.forward(x.data(), y.data(), nullptr, 2, 32, train);
  b.backward();
  EXPECT_NEAR(la, lb, 1e-2 * la);
  EXPECT_NE(la, lb);  // not the fp32 path
  double dot = 0, na = 0, nb = 0;
  for (std::size_t i = 0; i < a.grads().size(); i++) {
    dot += static_cast<double>(a.grads().data()[i]) * b.grads().data()[i];
    na += static_cast<double>(a.grads().data()[i]) * a.grads().data()[i];
    nb += static_cast<double>(b.grads().data()[i]) * b.grads().data()[i];
  }
  EXPECT_GT(dot / std::sqrt(na * nb), 0.999);  // gradient directions agree
  // a weight of the first layer's fc, moved by a relative 2^-12 (below bf16's 2^-8 resolution, away from a tie)
  const ParamSpec* fc = nullptr;
  for (const ParamSpec& s : b.specs())
    if (s.kind == ParamKind::matrix && s.name.find("fc") != std::string::npos) {
      fc = &s;
      break;
    }
  ASSERT_NE(fc, nullptr);
  float& w = b.params().data()[fc->offset + 5];
  const float w0 = bf16_to_float(float_to_bf16(w));
  w = w0 * (1.0f + 0x1p-12f);
  EXPECT_EQ(b.forward(x.data(), y.data(), nullptr, 2, 32), b.forward(x.data(), y.data(), nullptr, 2, 32));
  const double same = b.forward(x.data(), y.data(), nullptr, 2, 32);
  w = w0;
  EXPECT_EQ(b.forward(x.data(), y.data(), nullptr, 2, 32), same);
  w = w0 * 1.5f;
  EXPECT_NE(b.forward(x.data(), y.data(), nullptr, 2, 32), same);
}

// Weights kept in bf16 (inference): the logits equal, bit for bit, a Precision::bf16 forward over fp32 weights that
// hold the same bf16 values; the matrices' fp32 values are released (zero), the other tensors kept; training and
// initialising are refused; going back to fp32 restores the (bf16) values exactly.
TEST_P(EveryMethod, Bf16WeightStorageEqualsBf16ProductsOverTheSameValues) {
  if (!matmul_backend().bf16) GTEST_SKIP() << "no bf16 products on this CPU";
  for (Arch arch : {Arch::gpt, Arch::llama}) {
    ModelConfig c = tiny(GetParam());
    c.arch = arch;
    c.n_embd = 64;
    c.n_head = 4;
    c.block_size = 32;
    if (arch == Arch::llama) {
      c.n_kv_head = 2;
      c.tie_embeddings = false;
      c.bias = false;
    }
    Transformer a(c), b(c);
    a.init_weights(5);
    for (const ParamSpec& s : a.specs())
      if (Transformer::kept_in_bf16(s))
        for (std::size_t i = 0; i < s.numel(); i++) {
          float& w = a.params()[s.offset + i];
          w = bf16_to_float(float_to_bf16(w));
        }
    std::copy_n(a.params().data(), a.params().size(), b.params().data());
    b.store_weights(WeightStorage::bf16);
    EXPECT_EQ(b.weight_storage(), WeightStorage::bf16);
    for (const ParamSpec& s : b.specs())
      for (std::size_t i = 0; i < s.numel(); i++)
        ASSERT_EQ(b.params()[s.offset + i], Transformer::kept_in_bf16(s) ? 0.0f : a.params()[s.offset + i])
            << s.name << " " << i;

    std::vector<std::int32_t> x(64), y(64);
    for (int i = 0; i < 64; i++) {
      x[i] = (i * 5 + 1) % 32;
      y[i] = (i * 3 + 2) % 32;
    }
    ForwardOptions fo;
    fo.keep_logits = true;
    const double l32 = a.forward(x.data(), y.data(), nullptr, 2, 32, fo);
    a.set_precision(Precision::bf16);
    const double la = a.forward(x.data(), y.data(), nullptr, 2, 32, fo);
    const std::vector<float> ref(a.logits(), a.logits() + 64 * 32);
    const double lb = b.forward(x.data(), y.data(), nullptr, 2, 32, fo);
    EXPECT_EQ(la, lb) << to_string(arch);
    EXPECT_TRUE(std::equal(ref.begin(), ref.end(), b.logits())) << to_string(arch);
    EXPECT_NE(la, l32);  // the bf16 products, not fp32's
    EXPECT_NEAR(la, l32, 1e-2 * l32);

    ForwardOptions train;
    train.need_grad = true;
    EXPECT_THROW(b.forward(x.data(), y.data(), nullptr, 2, 32, train), ConfigError);
    EXPECT_THROW(b.init_weights(1), ConfigError);
    EXPECT_THROW(b.store_weights(WeightStorage::fp32, [](const ParamSpec&, float*) {}), ConfigError);

    b.store_weights(WeightStorage::fp32);
    EXPECT_TRUE(std::equal(a.params().data(), a.params().data() + a.params().size(), b.params().data()));
    a.set_precision(Precision::fp32);
    EXPECT_EQ(b.forward(x.data(), y.data(), nullptr, 2, 32), l32);
  }
}

INSTANTIATE_TEST_SUITE_P(All, EveryMethod,
                         ::testing::Values(PositionMethod::none, PositionMethod::alibi, PositionMethod::sinusoidal,
                                           PositionMethod::learned, PositionMethod::rope, PositionMethod::t5),
                         [](const auto& info) { return std::string(to_string(info.param)); });

TEST(Transformer, AlibiAndRopeModelsAreInvariantToAShiftOfAllPositions) {
  for (auto m : {PositionMethod::alibi, PositionMethod::rope, PositionMethod::t5}) {
    Transformer g(tiny(m));
    g.init_weights(5);
    std::vector<std::int32_t> x = {1, 5, 9, 2, 7, 7, 3, 0}, p0(8), p1(8);
    for (int t = 0; t < 8; t++) {
      p0[t] = t;
      p1[t] = t + 1000;
    }
    ForwardOptions fo;
    fo.keep_logits = true;
    g.forward(x.data(), nullptr, p0.data(), 1, 8, fo);
    std::vector<float> a(g.logits(), g.logits() + 8 * 32);
    g.forward(x.data(), nullptr, p1.data(), 1, 8, fo);
    for (int i = 0; i < 8 * 32; i++) ASSERT_NEAR(g.logits()[i], a[i], 2e-4f) << to_string(m);
  }
}

}  // namespace
}  // namespace stretch

namespace stretch {
namespace {

// LongLoRA's S2-Attn (set_shifted_groups): a training forward attends within groups (its loss differs from full
// attention's), its gradients are those of that loss (central differences), and evaluation keeps full attention.
TEST(Transformer, ShiftedSparseAttentionTrainsWithinGroupsAndEvaluatesFully) {
  for (Arch arch : {Arch::gpt, Arch::llama}) {
    ModelConfig c = tiny(arch == Arch::llama ? PositionMethod::rope : PositionMethod::alibi);
    c.arch = arch;
    c.bias = arch == Arch::gpt;
    c.block_size = 32;
    Transformer full(c), s2(c);
    full.init_weights(9);
    s2.init_weights(9);
    s2.set_shifted_groups(8);
    EXPECT_TRUE(s2.tiled_training(1, 32));
    std::vector<std::int32_t> x(32), y(32);
    for (int t = 0; t < 32; t++) {
      x[t] = (t * 7 + 3) % 32;
      y[t] = (t * 5 + 1) % 32;
    }
    ForwardOptions train;
    train.need_grad = true;
    const double lf = full.forward(x.data(), y.data(), nullptr, 1, 32, train);
    s2.zero_grad();
    const double ls = s2.forward(x.data(), y.data(), nullptr, 1, 32, train);
    s2.backward();
    EXPECT_GT(std::abs(lf - ls), 1e-4) << to_string(arch);
    EXPECT_EQ(full.forward(x.data(), y.data(), nullptr, 1, 32), s2.forward(x.data(), y.data(), nullptr, 1, 32));
    // central differences of the S2 training loss on a few weights of the first block's attention and the MLP
    auto loss = [&]() {
      ForwardOptions fo;
      fo.need_grad = true;
      return s2.forward(x.data(), y.data(), nullptr, 1, 32, fo);
    };
    for (const ParamSpec& sp : s2.specs()) {
      if (sp.kind != ParamKind::matrix || sp.layer != 0) continue;
      for (std::size_t k : {std::size_t{3}, sp.numel() / 2, sp.numel() - 5}) {
        const std::size_t i = sp.offset + k;
        const float keep = s2.params()[i], h = 1e-2f;
        s2.params()[i] = keep + h;
        const double up = loss();
        s2.params()[i] = keep - h;
        const double down = loss();
        s2.params()[i] = keep;
        const double fd = (up - down) / (2.0 * h);
        EXPECT_NEAR(s2.grads()[i], fd, 2e-3 + 2e-2 * std::abs(fd)) << sp.name << " [" << k << "]";
      }
    }
  }
  Transformer t(tiny(PositionMethod::alibi));
  EXPECT_THROW(t.set_shifted_groups(1), ConfigError);
  EXPECT_THROW(t.set_shifted_groups(-8), ConfigError);
}

}  // namespace
}  // namespace stretch
