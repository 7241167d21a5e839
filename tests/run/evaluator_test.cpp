// The evaluation protocols: window plans, hand-computable totals, and agreement with the training loss.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "core/error.hpp"
#include "run/evaluate.hpp"
#include "run/evaluator.hpp"

namespace stretch {
namespace {

// One block of width 8, 2 heads, MLP 16, trained length 16, vocabulary 30: small enough to evaluate exhaustively.
ModelConfig one_layer_config() {
  ModelConfig c;
  c.vocab_size = 30;
  c.n_layer = 1;
  c.n_head = 2;
  c.n_embd = 8;
  c.mlp_hidden = 16;
  c.block_size = 16;
  return c;
}

// Targets scored by a plan, as absolute token indices (a window position j predicts x[start + j + 1]).
std::vector<long> scored_targets(const std::vector<Window>& plan) {
  std::vector<long> t;
  for (auto& w : plan)
    for (int j = w.score_from; j < w.score_to; j++) t.push_back(w.start + j + 1);
  return t;
}

TEST(EvalPlan, NonoverlappingScoresEveryTargetOnce) {
  auto plan = plan_windows(1001, 64, EvalProtocol::nonoverlapping);
  auto t = scored_targets(plan);
  ASSERT_EQ(t.size(), 1000u);
  for (long i = 0; i < 1000; i++) EXPECT_EQ(t[i], i + 1);
  EXPECT_EQ(plan.back().length, 1000 % 64);  // the last partial window
}

TEST(EvalPlan, SlidingScoresEveryTargetOnceWithAtLeastTMinusSContext) {
  for (int stride : {1, 7, 16, 64}) {
    const int T = 64;
    auto plan = plan_windows(500, T, EvalProtocol::sliding, stride);
    auto t = scored_targets(plan);
    ASSERT_EQ(t.size(), 499u) << stride;
    for (long i = 0; i < 499; i++) ASSERT_EQ(t[i], i + 1) << stride;
    for (std::size_t k = 1; k < plan.size(); k++)  // after the first window: context >= T - S
      EXPECT_GE(plan[k].score_from, T - stride) << "stride " << stride << " window " << k;
  }
}

TEST(EvalPlan, LlamaCppScoresTheSecondHalfOfWholeChunks) {
  auto plan = plan_windows(1000, 100, EvalProtocol::llamacpp);
  ASSERT_EQ(plan.size(), 10u);
  for (auto& w : plan) {
    EXPECT_EQ(w.length, 100);
    EXPECT_EQ(w.score_from, 50);
    EXPECT_EQ(w.score_to, 99);
  }
  EXPECT_EQ(scored_targets(plan).size(), 10u * 49u);
  EXPECT_THROW(plan_windows(199, 100, EvalProtocol::llamacpp), InputError);
}

TEST(EvalPlan, BadLengthsAndShortTextsAreRefusedWithCounts) {
  EXPECT_THROW(plan_windows(100, 0, EvalProtocol::nonoverlapping), UsageError);
  EXPECT_THROW(plan_windows(100, 10, EvalProtocol::sliding, 11), UsageError);
  try {
    plan_windows(50, 64, EvalProtocol::nonoverlapping);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("50 tokens"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("65"), std::string::npos) << e.what();
  }
}

// A model whose logits are all zero predicts the uniform distribution: every token costs ln V exactly, so
// each protocol's total is (tokens scored) x ln V, computable by hand.
TEST(EvalProtocols, TotalsOfAUniformModelAreHandComputable) {
  ModelConfig c = one_layer_config();
  c.vocab_size = 50;
  Transformer g(c);  // all parameters zero: LayerNorm weights 0 -> logits 0
  std::vector<std::int32_t> tokens(301);
  for (std::size_t i = 0; i < tokens.size(); i++) tokens[i] = static_cast<std::int32_t>((i * 7) % 50);
  const double lnV = std::log(50.0);
  EvalSettings s;
  s.protocol = EvalProtocol::nonoverlapping;
  LengthResult a = evaluate_length(g, tokens, 16, s);
  EXPECT_EQ(a.tokens, 300);
  EXPECT_NEAR(a.sum_nll, 300 * lnV, 1e-3);
  s.protocol = EvalProtocol::sliding;
  s.stride = 4;
  LengthResult b = evaluate_length(g, tokens, 16, s);
  EXPECT_EQ(b.tokens, 300);
  EXPECT_NEAR(b.sum_nll, 300 * lnV, 1e-3);
  s.protocol = EvalProtocol::llamacpp;
  LengthResult d = evaluate_length(g, tokens, 16, s);
  EXPECT_EQ(d.tokens, (301 / 16) * (16 - 1 - 8));
  EXPECT_NEAR(d.mean_nll(), lnV, 1e-5);
  EXPECT_NEAR(a.perplexity(), 50.0, 1e-3);
  EXPECT_NEAR(a.stderr_nll(), 0.0, 1e-4);
}

TEST(EvalProtocols, EvaluatingAWindowEqualsTheTrainingLossOfThatWindow) {
  ModelConfig c;
  c.vocab_size = 40;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  c.mlp_hidden = 32;
  c.block_size = 32;
  for (auto m : {PositionMethod::alibi, PositionMethod::t5, PositionMethod::rope, PositionMethod::learned}) {
    c.position = m;
    Transformer g(c);
    g.init_weights(11);
    std::vector<std::int32_t> tokens(33);
    for (std::size_t i = 0; i < tokens.size(); i++) tokens[i] = static_cast<std::int32_t>((i * 13 + 5) % 40);
    std::vector<std::int32_t> x(tokens.begin(), tokens.end() - 1), y(tokens.begin() + 1, tokens.end());
    ForwardOptions train;
    train.need_grad = true;
    const double train_loss = g.forward(x.data(), y.data(), nullptr, 1, 32, train);
    EvalSettings s;
    LengthResult r = evaluate_length(g, tokens, 32, s);
    EXPECT_EQ(r.tokens, 32);
    EXPECT_NEAR(r.mean_nll(), train_loss, 1e-6) << to_string(m);
  }
}

TEST(EvalPlan, ChunkedScoresAllButTheFirstTokenOfEachWindow) {
  auto plan = plan_windows(1000, 64, EvalProtocol::chunked);
  auto t = scored_targets(plan);
  ASSERT_EQ(plan.size(), 16u);                // ceil(1000 / 64)
  EXPECT_EQ(t.size(), 1000u - 16u);           // every token but each window's first
  for (auto& w : plan) EXPECT_EQ(w.start % 64, 0);
  for (long target : t) EXPECT_NE(target % 64, 0) << "the first token of a window is context only";
  EXPECT_EQ(plan.back().length, 1000 - 15 * 64);
  EXPECT_THROW(plan_windows(63, 64, EvalProtocol::chunked), InputError);
}

TEST(EvalProtocols, LlamaCppPutsBosFirstInEveryChunkWhenTheTokenizerHasOne) {
  ModelConfig c;
  c.vocab_size = 40;
  c.n_layer = 1;
  c.n_head = 2;
  c.n_embd = 16;
  c.mlp_hidden = 32;
  c.block_size = 16;
  Transformer g(c);
  g.init_weights(5);
  std::vector<std::int32_t> tokens(64);
  for (std::size_t i = 0; i < tokens.size(); i++) tokens[i] = static_cast<std::int32_t>((i * 7 + 5) % 40);
  EvalSettings s;
  s.protocol = EvalProtocol::llamacpp;
  s.bos = 1;
  LengthResult with_bos = evaluate_length(g, tokens, 16, s);
  // by hand: each chunk with its first token replaced, positions 8 .. 14 scored
  double sum = 0;
  long n = 0;
  for (int start = 0; start + 16 <= 64; start += 16) {
    std::vector<std::int32_t> x(tokens.begin() + start, tokens.begin() + start + 16), y(16, -1);
    x[0] = 1;
    for (int j = 8; j < 15; j++) y[j] = tokens[start + j + 1];
    const double mean = g.forward(x.data(), y.data(), nullptr, 1, 16);
    sum += mean * 7;
    n += 7;
  }
  EXPECT_EQ(with_bos.tokens, n);
  EXPECT_NEAR(with_bos.mean_nll(), sum / n, 1e-6);
  s.bos = -1;
  EXPECT_NE(evaluate_length(g, tokens, 16, s).mean_nll(), with_bos.mean_nll());
}

TEST(EvalProtocols, LearnedPositionsPastTheTableNeedClamping) {
  ModelConfig c;
  c.vocab_size = 20;
  c.n_layer = 1;
  c.n_head = 1;
  c.n_embd = 8;
  c.mlp_hidden = 8;
  c.block_size = 8;
  c.position = PositionMethod::learned;
  Transformer g(c);
  g.init_weights(1);
  std::vector<std::int32_t> tokens(100, 3);
  EvalSettings s;
  try {
    evaluate_length(g, tokens, 16, s);
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("`clamp_positions`"), std::string::npos);
  }
  s.clamp_positions = true;
  EXPECT_EQ(evaluate_length(g, tokens, 16, s).tokens, 99);
}

TEST(EvalProtocols, LossByPositionBucketsAverageToTheMean) {
  ModelConfig c = one_layer_config();
  Transformer g(c);
  g.init_weights(2);
  std::vector<std::int32_t> tokens(16 * 10 + 1);
  for (std::size_t i = 0; i < tokens.size(); i++) tokens[i] = static_cast<std::int32_t>((i * i) % 30);
  EvalSettings s;
  s.buckets = 4;
  LengthResult r = evaluate_length(g, tokens, 16, s);
  double total = 0;
  long n = 0;
  for (int b = 0; b < 4; b++) {
    EXPECT_EQ(r.bucket_tokens[b], 40);
    total += r.bucket_nll[b] * r.bucket_tokens[b];
    n += r.bucket_tokens[b];
  }
  EXPECT_NEAR(total / n, r.mean_nll(), 1e-9);
}

// Distributed evaluation (EvalSettings shard / shards): the shards' sums add up to one process's, for both
// protocols and with a max_tokens cut that falls inside a batch, so every shard stops at the same batch.
TEST(EvalProtocols, ShardsAddUpToTheWhole) {
  ModelConfig c = one_layer_config();
  c.position = PositionMethod::alibi;
  Transformer g(c);
  g.init_weights(5);
  std::vector<std::int32_t> tokens(16 * 23 + 5);
  for (std::size_t i = 0; i < tokens.size(); i++) tokens[i] = static_cast<std::int32_t>((i * 7 + i / 3) % 30);
  for (auto protocol : {EvalProtocol::nonoverlapping, EvalProtocol::sliding}) {
    for (long max_tokens : {0L, 100L}) {
      EvalSettings s;
      s.protocol = protocol;
      s.batch_tokens = 3 * 16;  // 3 windows per batch: 8 batches nonoverlapping, some of them other shards'
      s.max_tokens = max_tokens;
      const LengthResult whole = evaluate_length(g, tokens, 16, s);
      for (int shards : {2, 3, 5}) {
        double nll = 0.0, sq = 0.0;
        long n = 0;
        for (int k = 0; k < shards; k++) {
          s.shard = k;
          s.shards = shards;
          const LengthResult part = evaluate_length(g, tokens, 16, s);
          nll += part.sum_nll;
          sq += part.sum_sq;
          n += part.tokens;
        }
        s.shard = 0;
        s.shards = 1;
        EXPECT_EQ(n, whole.tokens) << shards << " shards, max_tokens " << max_tokens;
        EXPECT_NEAR(nll, whole.sum_nll, 1e-9 * whole.sum_nll) << shards << " shards";
        EXPECT_NEAR(sq, whole.sum_sq, 1e-9 * whole.sum_sq) << shards << " shards";
      }
      if (max_tokens > 0) {
        EXPECT_GE(whole.tokens, max_tokens);
        EXPECT_LT(whole.tokens, max_tokens + 3 * 16);  // stopped after the batch that reached it
      }
    }
  }
  EvalSettings bad;
  bad.shard = 2;
  bad.shards = 2;
  EXPECT_THROW(evaluate_length(g, tokens, 16, bad), UsageError);
}

}  // namespace
}  // namespace stretch

namespace stretch {
namespace {

// Attention sinks in evaluation (EvalSettings::keep): a window that fits the cache is the full forward; a longer one
// is streamed, and for a one-layer model every scored token's NLL is that of a full forward over the cache's
// content when it is predicted (the first `keep` tokens of the window, then its latest cache - keep tokens).
TEST(EvalSinks, StreamingEqualsFullForwardOverSinksAndWindow) {
  ModelConfig c;
  c.vocab_size = 40;
  c.n_layer = 1;
  c.n_head = 2;
  c.n_embd = 16;
  c.mlp_hidden = 32;
  c.block_size = 64;
  const int T = 48, S = 16, keep = 4;
  std::vector<std::int32_t> tokens(2 * T + 1);
  for (std::size_t i = 0; i < tokens.size(); i++) tokens[i] = static_cast<std::int32_t>((i * 13 + 5 + i * i) % 40);
  for (auto m : {PositionMethod::rope, PositionMethod::alibi, PositionMethod::t5, PositionMethod::none}) {
    c.position = m;
    Transformer g(c);
    g.init_weights(7);
    for (std::size_t i = 0; i < g.params().size(); i++) g.params()[i] *= 4.0f;  // attention far from uniform
    EvalSettings plain;
    EvalSettings sinks;
    sinks.keep = keep;
    sinks.cache = T;  // the window fits: the full forward
    EXPECT_NEAR(evaluate_length(g, tokens, T, sinks).mean_nll(), evaluate_length(g, tokens, T, plain).mean_nll(), 1e-5)
        << to_string(m);
    sinks.cache = S;
    const LengthResult r = evaluate_length(g, tokens, T, sinks);
    // the reference: per target, a full forward over what the cache holds
    double sum = 0;
    long n = 0;
    for (long w0 = 0; w0 < 2 * T; w0 += T)
      for (int t = 0; t < T; t++) {
        std::vector<std::int32_t> ctx;
        if (t < S) {
          ctx.assign(tokens.begin() + w0, tokens.begin() + w0 + t + 1);
        } else {
          ctx.assign(tokens.begin() + w0, tokens.begin() + w0 + keep);
          ctx.insert(ctx.end(), tokens.begin() + w0 + t - (S - keep) + 1, tokens.begin() + w0 + t + 1);
        }
        std::vector<std::int32_t> y(ctx.size(), -1);
        y.back() = tokens[static_cast<std::size_t>(w0 + t + 1)];
        ForwardOptions fo;
        sum += g.forward(ctx.data(), y.data(), nullptr, 1, static_cast<int>(ctx.size()), fo);
        n++;
      }
    EXPECT_EQ(r.tokens, n);
    EXPECT_NEAR(r.mean_nll(), sum / n, 1e-5) << to_string(m);
    EXPECT_GT(std::abs(r.mean_nll() - evaluate_length(g, tokens, T, plain).mean_nll()), 1e-3) << to_string(m);
  }
}

TEST(EvalSinks, MethodsThatCannotSlideAndBadValuesAreRefused) {
  ModelConfig c = one_layer_config();
  c.position = PositionMethod::sinusoidal;
  Transformer g(c);
  g.init_weights(3);
  std::vector<std::int32_t> tokens(100, 1);
  EvalSettings s;
  s.keep = 2;
  s.cache = 8;
  EXPECT_THROW(evaluate_length(g, tokens, 32, s), UsageError);  // names --keep
  c.position = PositionMethod::rope;
  Transformer r(c);
  r.init_weights(3);
  s.cache = 2;  // keep must be below the cache
  EXPECT_THROW(evaluate_length(r, tokens, 32, s), UsageError);
  s.cache = 8;
  s.positions = PositionIds::parse("randomized:64", "test");
  EXPECT_THROW(evaluate_length(r, tokens, 32, s), UsageError);
}

}  // namespace
}  // namespace stretch
