// Synthetic retrieval rows (run/retrieval_data.hpp): the items' exact text, the random stream (nothing drawn without
// the option, the same rows on any rank count, exact resume), and a model trained on them retrieving at L.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/safetensors.hpp"
#include "run/checkpoint.hpp"
#include "run/passkey.hpp"
#include "run/retrieval_data.hpp"
#include "run/train_data.hpp"
#include "run/trainer.hpp"
#include "test_util.hpp"

namespace stretch {
namespace {
using test::TempDir;

std::vector<std::int32_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }
std::string text_of(const std::vector<std::int32_t>& ids, std::size_t from = 0, std::size_t to = std::string::npos) {
  std::string s;
  for (std::size_t i = from; i < std::min(to, ids.size()); i++) s += static_cast<char>(ids[i]);
  return s;
}

TEST(RetrievalRows, AFillerItemIsThePasskeyPromptAndItsAnswer) {
  auto tok = make_byte_tokenizer();
  const auto corpus = bytes_of(test::generated_text(5000));
  RetrievalRows rows(*tok, 512);
  for (double u : {0.0, 0.5, 0.999}) {
    const RetrievalItem it = rows.item(4711, 0.5, u, false, 0.3, corpus);
    const std::string s = text_of(it.ids);
    // 237 bytes fixed + the key twice (245 with 4711) + 6 for " 4711." + 91 per filler: 0, 1 or 2 fit in 513
    const int n = u < 1.0 / 3 ? 0 : (u < 2.0 / 3 ? 1 : 2);
    EXPECT_EQ(s, passkey_text(4711, n, 0.5) + " 4711.") << u;
    EXPECT_EQ(text_of(it.ids, it.answer_start), " 4711.");
    EXPECT_LE(it.ids.size(), 513u);
  }
}

TEST(RetrievalRows, ATextItemHidesTheNeedleInCorpusText) {
  auto tok = make_byte_tokenizer();
  const std::string text = test::generated_text(5000);
  const auto corpus = bytes_of(text);
  RetrievalRows rows(*tok, 512);
  const RetrievalItem it = rows.item(123, 0.25, 0.999, true, 0.5, corpus);
  const std::string s = text_of(it.ids);
  EXPECT_EQ(s.size(), 513u);  // the longest haystack fills the window
  const std::string head = std::string(kPasskeyInstruction) + "\n";
  const std::string needle = "\n" + passkey_needle(123) + "\n";
  const std::string tail = "\n" + std::string(kPasskeyQuestion) + " 123.";
  ASSERT_EQ(s.substr(0, head.size()), head);
  ASSERT_EQ(s.substr(s.size() - tail.size()), tail);
  const std::size_t at = s.find(needle);
  ASSERT_NE(at, std::string::npos);
  // the haystack is consecutive corpus text around the needle, a quarter of it before
  const std::string hay = s.substr(head.size(), at - head.size()) +
                          s.substr(at + needle.size(), s.size() - tail.size() - at - needle.size());
  EXPECT_NE(text.find(hay), std::string::npos);
  EXPECT_NEAR(static_cast<double>(at - head.size()) / hay.size(), 0.25, 0.01);
  EXPECT_EQ(text_of(it.ids, it.answer_start), " 123.");
}

TEST(RetrievalRows, TooShortAWindowIsRefusedWithTheTokensNeeded) {
  auto tok = make_byte_tokenizer();
  try {
    RetrievalRows rows(*tok, 200);
    FAIL() << "accepted a window of 201 tokens";
  } catch (const ConfigError& e) {
    // the prompt with a five-digit key (247 bytes) and its answer " 50000." (7)
    EXPECT_NE(std::string(e.what()).find("takes up to 254 tokens"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("block_size of at least 253"), std::string::npos) << e.what();
  }
  EXPECT_THROW(RetrievalRows(*tok, 252), ConfigError);
  EXPECT_NO_THROW(RetrievalRows(*tok, 253));
}

// apply(): fraction 0 draws nothing; the rows a rank replaces are the rows one process replaces for it.
TEST(RetrievalRows, RanksReplaceTheRowsOneProcessWouldAndNothingIsDrawnAtZero) {
  auto tok = make_byte_tokenizer();
  const auto corpus = bytes_of(test::generated_text(20000));
  const int T = 300, B = 6;
  RetrievalRows rows(*tok, T);
  auto draw = [&](int local, int rank, double fraction, Rng& rng) {
    std::vector<std::int32_t> x(static_cast<std::size_t>(local) * T), y(x.size());
    draw_windows(corpus, T, B, local, rank, rng, x, y);
    const int n = rows.apply(corpus, B, local, rank, fraction, Haystack::mixed, rng, x, y);
    return std::make_pair(n, std::make_pair(x, y));
  };
  Rng a(5), b(5);
  draw(B, 0, 0.0, a);
  std::vector<std::int32_t> bx(static_cast<std::size_t>(B) * T), by(bx.size());
  draw_windows(corpus, T, B, B, 0, b, bx, by);
  EXPECT_EQ(a.state(), b.state());  // only draw_windows drew
  Rng one(9);
  auto [n_all, whole] = draw(B, 0, 0.5, one);
  EXPECT_GT(n_all, 0);
  EXPECT_LT(n_all, B);
  int n_ranks = 0;
  for (int r = 0; r < 3; r++) {
    Rng rr(9);
    auto [n, part] = draw(2, r, 0.5, rr);
    n_ranks += n;
    EXPECT_EQ(rr.state(), one.state()) << r;  // every rank drew the whole batch's stream
    for (std::size_t i = 0; i < part.first.size(); i++) {
      ASSERT_EQ(part.first[i], whole.first[static_cast<std::size_t>(r) * 2 * T + i]) << r;
      ASSERT_EQ(part.second[i], whole.second[static_cast<std::size_t>(r) * 2 * T + i]) << r;
    }
  }
  EXPECT_EQ(n_ranks, n_all);
  // a replaced row carries an item: y is x shifted by one, and the answer follows the question
  Rng all(3);
  auto [n1, full] = draw(B, 0, 1.0, all);
  EXPECT_EQ(n1, B);
  for (int b = 0; b < B; b++) {
    const std::string row = text_of(full.first, static_cast<std::size_t>(b) * T, static_cast<std::size_t>(b + 1) * T) +
                            static_cast<char>(full.second[static_cast<std::size_t>(b + 1) * T - 1]);
    const std::size_t q = row.find(kPasskeyQuestion);
    ASSERT_NE(q, std::string::npos) << row;
    const std::size_t key_at = row.find("The pass key is ");
    ASSERT_NE(key_at, std::string::npos);
    EXPECT_EQ(first_integer(row.substr(q + kPasskeyQuestion.size())), first_integer(row.substr(key_at)));
    for (int t = 0; t + 1 < T; t++)
      ASSERT_EQ(full.second[static_cast<std::size_t>(b) * T + t], full.first[static_cast<std::size_t>(b) * T + t + 1]);
  }
}

TrainOptions retrieval_options(const TempDir& dir, const std::string& name) {
  TrainOptions o;
  o.text = {dir / "corpus.txt"};
  o.out = dir / name;
  o.cache_dir = dir / "cache";
  o.model.n_layer = 2;
  o.model.n_embd = 64;
  o.model.n_head = 4;
  o.model.mlp_hidden = 256;
  o.model.block_size = 256;
  o.model.position = PositionMethod::alibi;
  o.batch = 8;
  o.lr = 3e-3;
  o.eval_interval = 0;
  o.quiet = true;
  o.retrieval_mix = 1.0;
  o.retrieval_haystack = "filler";
  return o;
}

TEST(RetrievalTraining, TheOptionResumesExactlyAndIsPartOfTheResumeMatch) {
  TempDir dir;
  test::write_text(dir / "corpus.txt", test::generated_text(60000));
  TrainOptions whole = retrieval_options(dir, "whole");
  whole.steps = 6;
  whole.retrieval_mix = 0.5;
  whole.retrieval_haystack = "mixed";
  train(whole);
  TrainOptions part = whole;
  part.out = dir / "part";
  part.stop_after = 3;
  train(part);
  part.resume = true;
  part.stop_after = 0;
  TrainOptions other = part;
  other.retrieval_mix = 0.25;
  EXPECT_THROW(train(other), UsageError);  // a resume must keep the mix
  train(part);
  auto wa = SafetensorsReader::open(resolve_checkpoint(whole.out) / "model.safetensors");
  auto wb = SafetensorsReader::open(resolve_checkpoint(part.out) / "model.safetensors");
  for (auto& t : wa.tensors()) EXPECT_EQ(wa.read_f32(t.name), wb.read_f32(t.name)) << t.name;
  const auto st = nlohmann::json::parse(test::read_text(resolve_checkpoint(whole.out) / "state.json"));
  EXPECT_EQ(st["options"]["retrieval_mix"], 0.5);
  EXPECT_EQ(st["options"]["retrieval_haystack"], "mixed");
  TrainOptions bad = whole;
  bad.retrieval_mix = 1.5;
  EXPECT_THROW(train(bad), UsageError);
  bad.retrieval_mix = 0.5;
  bad.retrieval_haystack = "hay";
  EXPECT_THROW(train(bad), UsageError);
}

// The point of the option: a test-sized model trained on the items retrieves every key at its training length,
// where the same model untrained retrieves none. Retrieval appears as a phase change (an induction circuit forms),
// whose step depends on the host's rounding and the schedule: with 1,000- and 1,500-step schedules it came at
// 800-1,000 steps on AVX-512 and on AVX2 (STRETCH_MAX_ISA=avx2), and a 1,000-step run on AVX2 missed it. So the run
// is planned for 2,000 steps, checked every 250 from step 500 on, and ends at the first check with every key right
// (passing on both paths, 70-90 s on one thread). Not under the sanitizers (5-10x slower).
TEST(RetrievalTraining, ATestSizedModelRetrievesEveryKeyAtItsTrainingLength) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "up to two thousand training steps: run in the optimized suites only";
#endif
  TempDir dir;
  test::write_text(dir / "corpus.txt", test::generated_text(60000));
  TrainOptions o = retrieval_options(dir, "run");
  o.steps = 2000;
  o.ckpt_interval = 0;
  auto tok = make_byte_tokenizer();
  PasskeySettings s;
  s.trials = 4;
  auto untrained = std::make_unique<Transformer>([&] {
    ModelConfig c = o.model;
    c.vocab_size = 256;
    return c;
  }());
  untrained->init_weights(1);
  auto before = passkey_sweep(*untrained, *tok, {256}, s, single_comm());
  EXPECT_EQ(before.length_accuracy(256), 0.0);
  long done = 0;
  PasskeyModelResult after;
  while (done < o.steps) {
    o.stop_after = done == 0 ? 500 : 250;
    o.resume = done > 0;
    done = train(o).steps;
    auto model = load_model(read_checkpoint_meta(o.out));
    after = passkey_sweep(*model, *tok, {256}, s, single_comm());
    if (after.length_accuracy(256) == 1.0) break;
  }
  EXPECT_EQ(after.length_accuracy(256), 1.0) << "after " << done << " steps\n" << passkey_table(after);
  RecordProperty("steps_to_retrieve", std::to_string(done));
}

}  // namespace
}  // namespace stretch
