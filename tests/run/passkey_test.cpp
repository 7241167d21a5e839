// Passkey retrieval (run/passkey.hpp): the prompt builder gives the landmark protocol's exact text, filler count
// and token length of an independent Python implementation (tools/make_passkey_fixture.py, for the byte tokenizer
// and SentencePiece's tok512 with BOS), the keys follow the documented derivation, the answer parser takes the
// first integer, a trial's answer is the greedy continuation of full forwards, and a sweep split over two ranks
// gives one process's results.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/tokenizer.hpp"
#include "run/passkey.hpp"
#include "test_util.hpp"

namespace stretch {
namespace {
namespace fs = std::filesystem;

const fs::path kFixture = fs::path(STRETCH_SOURCE_DIR) / "tests/fixtures/passkey/prompts.json";
fs::path tok512() { return test::shared_data() / "llama2c" / "tok512.model"; }

nlohmann::json fixture() { return nlohmann::json::parse(test::read_text(kFixture)); }

TEST(Passkey, PromptBuilderGivesTheLandmarkTextOfTheFixture) {
  auto byte = make_byte_tokenizer();
  std::unique_ptr<Tokenizer> sp;
  if (fs::exists(tok512())) sp = load_sentencepiece_tokenizer(tok512());
  int checked = 0;
  const nlohmann::json f = fixture();
  for (auto& c : f["cases"]) {
    const Tokenizer* tok = c["tokenizer"] == "byte" ? byte.get() : sp.get();
    if (!tok) continue;
    const int length = c["length"], trial = c["trial"];
    const double depth = c["depth"];
    const int key = passkey_key(c["seed"].get<std::uint64_t>(), length, depth, trial);
    ASSERT_EQ(key, c["key"].get<int>());
    const PasskeyPrompt p = build_passkey_prompt(*tok, key, depth, length);
    const std::string what = c["tokenizer"].get<std::string>() + " length " + std::to_string(length);
    EXPECT_EQ(p.text, c["text"].get<std::string>()) << what;
    EXPECT_EQ(p.fillers, c["fillers"].get<int>()) << what;
    EXPECT_EQ(p.fillers_before, c["fillers_before"].get<int>()) << what;
    EXPECT_EQ(static_cast<int>(p.ids.size()), c["tokens"].get<int>()) << what;
    EXPECT_LE(static_cast<int>(p.ids.size()), length) << what;
    if (tok->bos_id() >= 0) {
      EXPECT_EQ(p.ids.front(), tok->bos_id()) << what;
    }
    checked++;
  }
  EXPECT_GE(checked, 5);
}

TEST(Passkey, TheTextIsTheProtocolsFiveLines) {
  // the exact strings of the issue, independent of the fixture
  const std::string t = passkey_text(123, 2, 0.5);
  const std::string filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
  EXPECT_EQ(t,
            "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz "
            "you about the important information there.\n" + filler + "\nThe pass key is 123. Remember it. 123 is the "
            "pass key.\n" + filler + "\nWhat is the pass key? The pass key is");
  EXPECT_EQ(passkey_fillers_before(10, 0.0), 0);
  EXPECT_EQ(passkey_fillers_before(10, 1.0), 10);
  EXPECT_EQ(passkey_fillers_before(10, 0.25), 3);  // floor(2.5 + 0.5)
  EXPECT_EQ(passkey_fillers_before(0, 0.5), 0);
}

TEST(Passkey, KeysFollowTheDocumentedDerivation) {
  const nlohmann::json f = fixture();
  for (auto& k : f["keys"])
    EXPECT_EQ(passkey_key(k["seed"].get<std::uint64_t>(), k["length"], k["depth"].get<double>(), k["trial"]),
              k["key"].get<int>());
  // in range, and different trials, lengths, depths or seeds give different keys (almost always)
  int same = 0;
  for (int t = 0; t < 200; t++) {
    const int a = passkey_key(1, 512, 0.5, t);
    EXPECT_GE(a, 1);
    EXPECT_LE(a, 50000);
    same += a == passkey_key(1, 512, 0.5, t + 1);
    same += a == passkey_key(2, 512, 0.5, t);
    same += a == passkey_key(1, 1024, 0.5, t);
    same += a == passkey_key(1, 512, 0.25, t);
  }
  EXPECT_LE(same, 2);
}

// Needle in a text haystack: the words of the fixture's text around the needle, from the documented start.
TEST(Passkey, HaystackPromptsAreTheFixturesText) {
  auto byte = make_byte_tokenizer();
  const nlohmann::json f = fixture()["haystack"];
  const auto words = haystack_words(f["text"].get<std::string>(), "fixture");
  int checked = 0;
  for (auto& c : f["cases"]) {
    const int length = c["length"], trial = c["trial"];
    const double depth = c["depth"];
    const std::uint64_t seed = c["seed"].get<std::uint64_t>();
    const std::size_t start = haystack_start(seed, length, depth, trial, words.size());
    ASSERT_EQ(start, c["start"].get<std::size_t>());
    const PasskeyPrompt p = build_haystack_prompt(*byte, passkey_key(seed, length, depth, trial), depth, length,
                                                  words, start);
    EXPECT_EQ(p.text, c["text"].get<std::string>()) << length;
    EXPECT_EQ(p.fillers, c["words"].get<int>()) << length;
    EXPECT_EQ(p.fillers_before, c["fillers_before"].get<int>()) << length;
    EXPECT_EQ(static_cast<int>(p.ids.size()), c["tokens"].get<int>()) << length;
    checked++;
  }
  EXPECT_EQ(checked, 4);
  EXPECT_THROW(haystack_words("too few words here", "h.txt"), InputError);
}

TEST(Passkey, AnswerParserTakesTheFirstInteger) {
  EXPECT_EQ(first_integer("12345"), 12345);
  EXPECT_EQ(first_integer(" 4821. Remember"), 4821);
  EXPECT_EQ(first_integer("The pass key is 77 and 88"), 77);
  EXPECT_EQ(first_integer("key: 007."), 7);
  EXPECT_EQ(first_integer("-42"), 42);  // a sign is leading text
  EXPECT_FALSE(first_integer("no digits here").has_value());
  EXPECT_FALSE(first_integer("").has_value());
  EXPECT_EQ(first_integer("99999999999999999999999"), 1000000000000000000LL);  // saturates, never a key
  // digits split across tokens join: the output is decoded as a whole
  auto byte = make_byte_tokenizer();
  const std::vector<std::int32_t> ids = {' ', '4', '5', '8', '2', '1', '.'};
  EXPECT_EQ(first_integer(byte->decode(ids)), 45821);
  if (fs::exists(tok512())) {
    auto sp = load_sentencepiece_tokenizer(tok512());
    const auto pieces = sp->encode("The pass key is 45821. Remember it.");
    int digit_pieces = 0;  // tok512 has no multi-digit pieces: each digit is its own token
    for (auto id : pieces) {
      const std::string s = sp->decode(std::vector<std::int32_t>{id});
      digit_pieces += s.find_first_of("0123456789") != std::string::npos;
    }
    EXPECT_GE(digit_pieces, 2);
    EXPECT_EQ(first_integer(sp->decode(pieces)), 45821);
  }
}

// A byte-level model's answer may be any bytes; the JSON report (UTF-8 by definition) holds them with each
// ill-formed sequence as U+FFFD and serializes (it threw json type_error 316 before), the answer parsed as before.
TEST(Passkey, AnAnswerOfInvalidUtf8StillMakesAJsonReport) {
  PasskeyReport r;
  PasskeyModelResult m;
  m.name = "byte-model";
  PasskeyCell c;
  c.length = 512;
  PasskeyTrial t;
  t.key = 42;
  t.output = std::string(" 42. \xAC\x82x\xE2\x82", 10);
  t.answer = 42;
  t.correct = true;
  c.trials.push_back(t);
  m.cells.push_back(c);
  r.models.push_back(m);
  const std::string text = to_json(r).dump();
  const auto back = nlohmann::json::parse(text);
  const std::string fffd = "\xEF\xBF\xBD";  // U+FFFD; the truncated E2 82 is one ill-formed sequence
  EXPECT_EQ(back["models"][0]["cells"][0]["trials"][0]["output"].get<std::string>(), " 42. " + fffd + fffd + "x" + fffd);
  EXPECT_EQ(back["models"][0]["cells"][0]["trials"][0]["answer"], 42);
  EXPECT_TRUE(valid_utf8(" 42. x"));
  EXPECT_FALSE(valid_utf8(t.output));
}

TEST(Passkey, ALengthBelowTheFixedLinesIsRefusedNamingTheFlag) {
  auto byte = make_byte_tokenizer();
  const std::size_t fixed = passkey_text(50000, 0, 0.5).size();
  try {
    build_passkey_prompt(*byte, 50000, 0.5, static_cast<int>(fixed) - 1);
    FAIL() << "expected UsageError";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("`lengths`"), std::string::npos) << e.what();
  }
  EXPECT_EQ(build_passkey_prompt(*byte, 50000, 0.5, static_cast<int>(fixed)).fillers, 0);
}

ModelConfig byte_model_config(PositionMethod p) {
  ModelConfig c;
  c.vocab_size = 256;
  c.n_layer = 2;
  c.n_head = 2;
  c.n_embd = 16;
  c.mlp_hidden = 32;
  c.block_size = 64;
  c.position = p;
  return c;
}

TEST(Passkey, ATrialAnswersWithTheGreedyContinuationOfFullForwards) {
  auto byte = make_byte_tokenizer();
  for (PositionMethod p : {PositionMethod::alibi, PositionMethod::rope}) {
    Transformer m(byte_model_config(p));
    m.init_weights(5);
    const PasskeyPrompt prompt = build_passkey_prompt(*byte, 31337, 0.5, 400);
    PasskeySettings s;
    const PasskeyTrial t = run_passkey_trial(m, *byte, prompt, s);
    // the reference: argmax of the last row of a full forward over prompt + answer so far, ten times
    std::vector<std::int32_t> seq = prompt.ids;
    ForwardOptions fo;
    fo.keep_logits = true;
    std::string expect;
    for (int k = 0; k < 10; k++) {
      const int T = static_cast<int>(seq.size());
      m.forward(seq.data(), nullptr, nullptr, 1, T, fo);
      const float* last = m.logits() + static_cast<std::size_t>(T - 1) * 256;
      const int next = static_cast<int>(std::max_element(last, last + 256) - last);
      seq.push_back(next);
      expect += static_cast<char>(next);
    }
    EXPECT_EQ(t.output, expect) << to_string(p);
    EXPECT_EQ(t.prompt_tokens, static_cast<int>(prompt.ids.size()));
    EXPECT_EQ(t.correct, first_integer(expect) == 31337);
  }
}

// Two ranks without MPI: rank 1 runs first and keeps its all-reduce buffer; rank 0's all-reduce adds it.
struct RecordingComm : Comm {
  int r, n;
  std::vector<double>* shared;
  RecordingComm(int rank, int size, std::vector<double>* buf) : r(rank), n(size), shared(buf) {}
  int rank() const override { return r; }
  int size() const override { return n; }
  void allreduce_sum(float*, std::size_t) override {}
  void allreduce_sum(double* d, std::size_t k) override {
    if (shared->empty()) {
      shared->assign(d, d + k);
    } else {
      for (std::size_t i = 0; i < k; i++) d[i] += (*shared)[i];
    }
  }
  void broadcast(float*, std::size_t, int) override {}
  bool same_on_all(std::uint64_t) override { return true; }
  [[noreturn]] void abort_job(int) noexcept override { std::abort(); }
};

TEST(Passkey, ASweepSplitOverTwoRanksGivesOneProcesssResults) {
  auto byte = make_byte_tokenizer();
  ModelConfig c = byte_model_config(PositionMethod::alibi);
  Transformer m(c);
  m.init_weights(11);
  PasskeySettings s;
  s.depths = {0.0, 1.0};
  s.trials = 3;
  s.answer_tokens = 4;
  const std::vector<int> lengths = {260, 330};
  const PasskeyModelResult one = passkey_sweep(m, *byte, lengths, s, single_comm());
  std::vector<double> buf;
  RecordingComm r1(1, 2, &buf), r0(0, 2, &buf);
  passkey_sweep(m, *byte, lengths, s, r1);
  const PasskeyModelResult two = passkey_sweep(m, *byte, lengths, s, r0);
  ASSERT_EQ(one.cells.size(), 4u);
  ASSERT_EQ(two.cells.size(), 4u);
  for (std::size_t i = 0; i < one.cells.size(); i++) {
    EXPECT_EQ(one.cells[i].length, lengths[i / 2]);
    EXPECT_EQ(one.cells[i].depth, s.depths[i % 2]);
    for (int t = 0; t < 3; t++) {
      const PasskeyTrial &a = one.cells[i].trials[t], &b = two.cells[i].trials[t];
      EXPECT_EQ(a.key, passkey_key(1, lengths[i / 2], s.depths[i % 2], t));
      EXPECT_EQ(a.key, b.key);
      EXPECT_EQ(a.output, b.output) << "cell " << i << " trial " << t;
      EXPECT_EQ(a.prompt_tokens, b.prompt_tokens);
      EXPECT_EQ(a.fillers, b.fillers);
      EXPECT_EQ(a.correct, b.correct);
      EXPECT_LE(a.prompt_tokens, lengths[i / 2]);
    }
  }
}

TEST(Passkey, BadSettingsAreRefusedNamingTheFlag) {
  auto byte = make_byte_tokenizer();
  Transformer m(byte_model_config(PositionMethod::learned));
  m.init_weights(1);
  auto expect = [&](const std::vector<int>& lengths, PasskeySettings s, const std::string& needle) {
    try {
      passkey_sweep(m, *byte, lengths, s, single_comm());
      FAIL() << "expected UsageError naming " << needle;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  PasskeySettings s;
  s.trials = 0;
  expect({300}, s, "`trials`");
  s = {};
  s.depths = {0.5, 1.5};
  expect({300}, s, "`depths`");
  s = {};
  expect({30}, s, "`lengths`");  // below the fixed lines
  // a learned table of 64 positions cannot reach a prompt of 300 tokens
  expect({300}, s, "`lengths`");
}

}  // namespace
}  // namespace stretch
