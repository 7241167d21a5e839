// The context options inside the whole model (each kernel is checked on its own elsewhere): sliding-window
// attention, log-n scaling, RoPE scalings and grouped-query attention give the same loss through the training
// path (plain attention, probabilities stored) and the inference path (tiled attention), a window limits the
// receptive field to n_layer * (w - 1) tokens, and the model's gradient agrees with a directional finite
// difference of its loss.
#include <gtest/gtest.h>

#include <cmath>

#include "core/rng.hpp"
#include "model/transformer.hpp"

namespace stretch {
namespace {

ModelConfig config(Arch arch) {
  ModelConfig c;
  c.arch = arch;
  c.vocab_size = 40;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_kv_head = arch == Arch::llama ? 2 : 0;
  c.n_embd = 32;
  c.mlp_hidden = 48;
  c.block_size = 16;
  c.position = PositionMethod::rope;
  c.bias = arch == Arch::gpt;
  c.tie_embeddings = arch == Arch::gpt;
  return c;
}

struct Case {
  const char* name;
  Arch arch;
  int window;
  LognMode logn;
  const char* scaling;
  PositionMethod position;
};

const Case kCases[] = {
    {"llama_gqa_window_logn_yarn", Arch::llama, 5, LognMode::full, "yarn:2", PositionMethod::rope},
    {"llama_gqa_linear", Arch::llama, 0, LognMode::off, "linear:4", PositionMethod::rope},
    {"llama_alibi_window", Arch::llama, 7, LognMode::beyond, "none", PositionMethod::alibi},
    {"gpt_window_logn_ntk", Arch::gpt, 4, LognMode::full, "ntk:2", PositionMethod::rope},
    {"gpt_t5_window", Arch::gpt, 6, LognMode::off, "none", PositionMethod::t5},
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class Context : public ::testing::TestWithParam<Case> {};

std::unique_ptr<Transformer> make(const Case& k) {
  ModelConfig c = config(k.arch);
  c.position = k.position;
  c.attn_window = k.window;
  c.logn = k.logn;
  c.rope_scaling = RopeScaling::parse(k.scaling, "test");
  auto m = std::make_unique<Transformer>(c);
  m->init_weights(11);
  // larger weights than GPT-2's init, so attention patterns (and so the window, log-n) matter
  for (auto& s : m->specs())
    if (s.kind == ParamKind::matrix || s.kind == ParamKind::embedding || s.kind == ParamKind::position)
      for (std::size_t i = 0; i < s.numel(); i++) m->params()[s.offset + i] *= 10.0f;
  return m;
}

TEST_P(Context, TrainingAndInferencePathsAgree) {
  auto m = make(GetParam());
  const int B = 2, T = 24;  // past block_size: positions beyond the trained length, log-n "beyond" active
  std::vector<std::int32_t> x(B * T), y(B * T);
  for (int i = 0; i < B * T; i++) {
    x[i] = (i * 7 + 3) % 40;
    y[i] = (i * 11 + 5) % 40;
  }
  ForwardOptions tr;
  tr.need_grad = true;
  const double lt = m->forward(x.data(), y.data(), nullptr, B, T, tr);
  m->backward();
  const double le = m->forward(x.data(), y.data(), nullptr, B, T);
  EXPECT_NEAR(lt, le, 2e-6 * std::abs(lt));
}

TEST_P(Context, GradientMatchesADirectionalFiniteDifference) {
  auto m = make(GetParam());
  const int B = 2, T = 20;
  std::vector<std::int32_t> x(B * T), y(B * T);
  for (int i = 0; i < B * T; i++) {
    x[i] = (i * 5 + 1) % 40;
    y[i] = (i * 3 + 2) % 40;
  }
  ForwardOptions tr;
  tr.need_grad = true;
  m->zero_grad();
  m->forward(x.data(), y.data(), nullptr, B, T, tr);
  m->backward();
  // direction d: random normal over every parameter; compare grad . d with (L(p + e d) - L(p - e d)) / 2e
  Rng rng(3);
  const std::size_t n = m->params().size();
  std::vector<float> d(n), p0(m->params().data(), m->params().data() + n);
  double gd = 0;
  for (std::size_t i = 0; i < n; i++) {
    d[i] = static_cast<float>(rng.normal());
    gd += static_cast<double>(m->grads()[i]) * d[i];
  }
  auto loss_at = [&](double e) {
    for (std::size_t i = 0; i < n; i++) m->params()[i] = p0[i] + static_cast<float>(e) * d[i];
    return m->forward(x.data(), y.data(), nullptr, B, T);
  };
  const double e = 1e-3;
  const double fd = (loss_at(e) - loss_at(-e)) / (2 * e);
  EXPECT_NEAR(gd, fd, 2e-2 * std::abs(fd) + 1e-3) << "analytic " << gd << " vs finite difference " << fd;
}

INSTANTIATE_TEST_SUITE_P(All, Context, ::testing::ValuesIn(kCases), [](const auto& info) { return std::string(info.param.name); });

TEST(ContextWindow, BoundsTheReceptiveField) {
  for (const Case& k : kCases) {
    if (k.window == 0) continue;
    auto m = make(k);
    const int T = 24, V = 40;
    std::vector<std::int32_t> a(T), b(T);
    for (int t = 0; t < T; t++) a[t] = b[t] = (t * 7 + 3) % 40;
    b[2] = (a[2] + 1) % 40;  // change token 2
    ForwardOptions fo;
    fo.keep_logits = true;
    m->forward(a.data(), nullptr, nullptr, 1, T, fo);
    std::vector<float> la(m->logits(), m->logits() + T * V);
    m->forward(b.data(), nullptr, nullptr, 1, T, fo);
    const int reach = 2 + m->config().n_layer * (k.window - 1);  // last position token 2 can influence
    bool changed_inside = false;
    for (int t = 0; t < T; t++)
      for (int v = 0; v < V; v++) {
        const float diff = std::abs(m->logits()[t * V + v] - la[t * V + v]);
        if (t > reach) {
          ASSERT_EQ(diff, 0.0f) << "position " << t << " sees token 2 through a window of " << k.window;
        }
        if (t >= 2 && t <= reach && diff > 0) changed_inside = true;
      }
    EXPECT_TRUE(changed_inside) << k.name;
  }
}

}  // namespace
}  // namespace stretch
