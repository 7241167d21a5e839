// SentencePiece .model files through libsentencepiece, against reference ids from PyPI's sentencepiece package
// (tests/fixtures/sentencepiece/tok512_ids.json, written by tools/make_sentencepiece_fixture.py from
// tok512.model), against our own llama2.c tokenizer on the same vocabulary (tok512.bin), and with broken files.
// The tests on the real model need ../shared/data/llama2c/tok512.model (and tok512.bin) and skip without it.
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "core/error.hpp"
#include "io/tokenizer.hpp"
#include "io/tokenizer_llama2c.hpp"
#include "test_util.hpp"

namespace stretch {
namespace {
namespace fs = std::filesystem;
using Ids = std::vector<std::int32_t>;

fs::path tok512_model() { return test::shared_data() / "llama2c" / "tok512.model"; }
fs::path tok512_bin() { return test::shared_data() / "llama2c" / "tok512.bin"; }
fs::path fixture_path() { return fs::path(STRETCH_SOURCE_DIR) / "tests/fixtures/sentencepiece/tok512_ids.json"; }

#define REQUIRE_FILE(file)                                                                                   \
  do {                                                                                                       \
    if (!fs::exists(file))                                                                                   \
      GTEST_SKIP() << "missing " << fs::path(file).lexically_normal().string()                               \
                   << " (shared data beside the repository, absent in a fresh clone)";                       \
  } while (0)
#define REQUIRE_TOK512_MODEL() REQUIRE_FILE(tok512_model())

const Tokenizer& sp512() {
  static std::unique_ptr<Tokenizer> tok = load_sentencepiece_tokenizer(tok512_model());
  return *tok;
}

const nlohmann::json& fixture() {
  static const nlohmann::json j = nlohmann::json::parse(test::read_text(fixture_path()));
  return j;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The InputError message of loading `path`; fails the test when it loads or the message does not name the file.
std::string load_error(const fs::path& path) {
  try {
    load_sentencepiece_tokenizer(path);
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_TRUE(contains(msg, path.string())) << "message does not name the file: " << msg;
    return msg;
  }
  ADD_FAILURE() << "expected InputError loading " << path.string();
  return "";
}

TEST(SentencePieceTokenizer, MatchesPythonSentencePieceIds) {
  REQUIRE_TOK512_MODEL();
  const auto& f = fixture();
  EXPECT_EQ(sp512().vocab_size(), 512);
  EXPECT_EQ(f.at("vocab_size").get<int>(), 512);
  ASSERT_GE(f.at("sentences").size(), 10u);
  for (const auto& c : f.at("sentences")) {
    const auto text = c.at("text").get<std::string>();
    const auto ids = c.at("ids").get<Ids>();
    EXPECT_EQ(sp512().encode(text), ids) << "text: " << nlohmann::json(text).dump();
    EXPECT_EQ(sp512().decode(ids), text) << "text: " << nlohmann::json(text).dump();
  }
  // texts the model's normalizer changes (extra whitespace, U+2581): same ids, decode gives the normalized text
  ASSERT_GE(f.at("normalized").size(), 4u);
  for (const auto& c : f.at("normalized")) {
    const auto text = c.at("text").get<std::string>();
    const auto ids = c.at("ids").get<Ids>();
    EXPECT_EQ(sp512().encode(text), ids) << "text: " << nlohmann::json(text).dump();
    EXPECT_EQ(sp512().decode(ids), c.at("decoded").get<std::string>()) << "text: " << nlohmann::json(text).dump();
  }
}

TEST(SentencePieceTokenizer, KnownIdsWithoutBos) {
  REQUIRE_TOK512_MODEL();
  // ▁Once ▁upon ▁a ▁time , ▁there ▁was ▁a ▁little ▁g ir l ▁named ▁Lily .
  const Ids once{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426};
  EXPECT_EQ(sp512().encode("Once upon a time, there was a little girl named Lily."), once);
  EXPECT_EQ(sp512().encode("a\nb"), (Ids{261, 13, 430}));  // "\n" is the byte piece <0x0A>
  EXPECT_EQ(sp512().encode(""), Ids{});
  EXPECT_EQ(sp512().type(), "sentencepiece");
  EXPECT_FALSE(sp512().is_byte_level());
  // no BOS (id 1) in front: callers add it; BOS/EOS decode to nothing, <unk> to the model's unk_surface
  EXPECT_EQ(sp512().decode(Ids{1, 403, 407, 2}), "Once upon");
  EXPECT_EQ(sp512().decode(Ids{403, 407}), "Once upon");
  EXPECT_EQ(sp512().decode(Ids{}), "");
  // (tok512.model stores it escaped: the 14 characters " \342\201\207 " rather than " ⁇ ")
  EXPECT_EQ(sp512().decode(Ids{0}), fixture().at("unk_decoded").get<std::string>());
  EXPECT_EQ(sp512().decode(Ids{0}), " \\342\\201\\207 ");
}

TEST(SentencePieceTokenizer, RoundTripsNormalizedText) {
  REQUIRE_TOK512_MODEL();
  // single spaces between words, none at the ends: normalization leaves the text as it is
  std::vector<std::string> texts{"Hello world", "The cat sat on the mat.", "x", "tabs\tand\tmore",
                                 "caf\xC3\xA9 na\xC3\xAFve", "\xE6\x97\xA5\xE6\x9C\xAC", "a\n\nb"};
  std::string story = test::generated_text(4000);
  while (!story.empty() && (story.back() == ' ' || story.back() == '\n')) story.pop_back();
  texts.push_back(story);
  for (const auto& s : texts) EXPECT_EQ(sp512().decode(sp512().encode(s)), s) << nlohmann::json(s).dump();
  // invalid UTF-8 is not rejected; SentencePiece replaces it (decode no longer gives the input back)
  EXPECT_NO_THROW(sp512().encode("bad \xC0\x80 utf8 \xFF tail \xE2\x82"));
}

TEST(SentencePieceTokenizer, AgreesWithLlama2cTokenizerOnSimpleText) {
  REQUIRE_TOK512_MODEL();
  REQUIRE_FILE(tok512_bin());
  const auto l2c = load_llama2c_tokenizer(tok512_bin(), 512);
  std::vector<std::string> texts;
  for (const auto& c : fixture().at("sentences")) texts.push_back(c.at("text").get<std::string>());
  // a generated story, one line at a time (no leading/trailing/repeated spaces)
  const std::string story = test::generated_text(3000, 11);
  for (std::size_t a = 0, b; a < story.size(); a = b + 1) {
    b = story.find('\n', a);
    if (b == std::string::npos) b = story.size();
    std::string line = story.substr(a, b - a);
    while (!line.empty() && line.back() == ' ') line.pop_back();
    if (!line.empty()) texts.push_back(line);
  }
  ASSERT_GE(texts.size(), 15u);
  for (const auto& s : texts) {
    const auto ids = sp512().encode(s);
    EXPECT_EQ(ids, l2c->encode(s)) << nlohmann::json(s).dump();
    EXPECT_EQ(sp512().decode(ids), l2c->decode(llama2c_encode_with_bos(*l2c, s))) << nlohmann::json(s).dump();
  }
  // where they differ: SentencePiece strips and collapses spaces (remove_extra_whitespaces), run.c does not
  EXPECT_EQ(sp512().encode("  a  b "), sp512().encode("a b"));
  EXPECT_NE(l2c->encode("  a  b "), l2c->encode("a b"));
}

TEST(SentencePieceTokenizer, ConcurrentEncodeDecodeMatchSerial) {
  REQUIRE_TOK512_MODEL();
  std::vector<std::string> texts;
  for (unsigned seed = 1; seed <= 16; ++seed) texts.push_back(test::generated_text(2000, seed));
  std::vector<Ids> want;
  std::vector<std::string> want_text;
  for (const auto& s : texts) {
    want.push_back(sp512().encode(s));
    want_text.push_back(sp512().decode(want.back()));
  }
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 20; ++rep)
        for (std::size_t i = 0; i < texts.size(); ++i) {
          const std::size_t k = (i + static_cast<std::size_t>(t) * 5) % texts.size();
          if (sp512().encode(texts[k]) != want[k] || sp512().decode(want[k]) != want_text[k]) ++mismatches[t];
        }
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

TEST(SentencePieceTokenizer, RejectsMissingEmptyAndGarbageFiles) {
  test::TempDir dir;
  {
    const std::string msg = load_error(dir / "nonexistent.model");
    EXPECT_TRUE(contains(msg, "no such file")) << msg;
  }
  {
    test::write_text(dir / "empty.model", "");
    const std::string msg = load_error(dir / "empty.model");
    EXPECT_TRUE(contains(msg, "empty file")) << msg;
  }
  {
    test::write_text(dir / "text.model", "this is not a sentencepiece model\n");
    const std::string msg = load_error(dir / "text.model");
    EXPECT_TRUE(contains(msg, "not a SentencePiece model")) << msg;
    EXPECT_TRUE(contains(msg, "expected a SentencePiece .model file")) << msg;
  }
  {  // random bytes: rejected one way or another, never a crash
    std::mt19937 rng(5);
    for (int k = 0; k < 50; ++k) {
      std::string junk(1 + rng() % 2000, '\0');
      for (char& c : junk) c = static_cast<char>(rng());
      test::write_text(dir / "junk.model", junk);
      load_error(dir / "junk.model");
    }
  }
  {  // well-formed protobuf with the three fields, but the piece inside is not a SentencePiece: the library says no
    test::write_text(dir / "proto.model", std::string("\x0A\x03" "abc" "\x12\x00" "\x1A\x00", 9));
    const std::string msg = load_error(dir / "proto.model");
    EXPECT_TRUE(contains(msg, "SentencePiece cannot load it")) << msg;
  }
  {  // well-formed protobuf lacking the specs
    test::write_text(dir / "nospec.model", std::string("\x0A\x00", 2));
    const std::string msg = load_error(dir / "nospec.model");
    EXPECT_TRUE(contains(msg, "no trainer_spec (field 2), normalizer_spec (field 3)")) << msg;
  }
}

TEST(SentencePieceTokenizer, RejectsEveryTruncationAndTokenizerBin) {
  REQUIRE_TOK512_MODEL();
  const std::string bytes = test::read_text(tok512_model());
  ASSERT_GT(bytes.size(), 1000u);
  test::TempDir dir;
  const fs::path cut = dir / "cut.model";
  // proper prefixes: the first 64, every 61st, and all of the last 400 bytes (where trainer_spec and
  // normalizer_spec sit), including those ending between two top-level fields
  int no_trainer_spec = 0, only_no_normalizer_spec = 0;
  for (std::size_t n = 1; n < bytes.size(); ++n) {
    if (n >= 64 && n % 61 != 0 && n + 400 < bytes.size()) continue;
    test::write_text(cut, bytes.substr(0, n));
    const std::string msg = load_error(cut);
    ASSERT_TRUE(contains(msg, "truncated")) << "prefix of " << n << " bytes: " << msg;
    if (contains(msg, "no trainer_spec (field 2), normalizer_spec (field 3)")) ++no_trainer_spec;
    if (contains(msg, "no normalizer_spec (field 3)")) ++only_no_normalizer_spec;
  }
  EXPECT_GE(no_trainer_spec, 1);  // cut right after the last piece (or between pieces)
  EXPECT_EQ(only_no_normalizer_spec, 1);  // cut right after trainer_spec
  {
    test::write_text(cut, bytes.substr(0, bytes.size() / 2));
    const std::string msg = load_error(cut);
    EXPECT_TRUE(contains(msg, "truncated: field 1 at byte")) << msg;
  }
  {  // a piece's length varint made huge
    std::string b = bytes;
    ASSERT_EQ(b[0], '\x0A');  // field 1 (pieces), length-delimited
    b[1] = '\x7F';
    test::write_text(cut, b);
    EXPECT_NE(load_error(cut), "");
  }
  REQUIRE_FILE(tok512_bin());
  const std::string msg = load_error(tok512_bin());  // llama2.c's tokenizer.bin is no .model
  EXPECT_TRUE(contains(msg, "expected a SentencePiece .model file")) << msg;
}

TEST(SentencePieceTokenizer, RejectsIdsOutsideTheVocabulary) {
  REQUIRE_TOK512_MODEL();
  for (std::int32_t bad : {-1, 512, 1 << 30}) {
    try {
      sp512().decode(Ids{403, bad});
      ADD_FAILURE() << "expected InputError for id " << bad;
    } catch (const InputError& e) {
      EXPECT_TRUE(contains(e.what(), "position 1")) << e.what();
    }
  }
}

TEST(SentencePieceTokenizer, IdentityDescribeAndFromJson) {
  REQUIRE_TOK512_MODEL();
  const std::string id = sp512().identity();
  ASSERT_EQ(id.size(), std::string("sentencepiece:").size() + 16);
  EXPECT_EQ(id.rfind("sentencepiece:", 0), 0u);
  const auto d = sp512().describe();
  EXPECT_EQ(d.at("type"), "sentencepiece");
  EXPECT_EQ("sentencepiece:" + d.at("hash").get<std::string>(), id);
  EXPECT_TRUE(fs::path(d.at("model").get<std::string>()).is_absolute());

  const auto back = tokenizer_from_json(d, "ckpt.json");
  EXPECT_EQ(back->type(), "sentencepiece");
  EXPECT_EQ(back->identity(), id);
  EXPECT_EQ(back->describe(), d);
  EXPECT_EQ(back->encode("Hello world"), sp512().encode("Hello world"));

  auto expect_error = [](const nlohmann::json& j, const std::string& part) {
    try {
      tokenizer_from_json(j, "ckpt.json");
      ADD_FAILURE() << "expected InputError for " << j.dump();
    } catch (const InputError& e) {
      EXPECT_TRUE(contains(e.what(), part)) << e.what();
    }
  };
  auto changed = d;
  changed["hash"] = "0000000000000000";
  expect_error(changed, "ckpt.json: tokenizer.hash: the file");
  auto moved = d;
  moved["model"] = "/nonexistent/tok512.model";
  expect_error(moved, "ckpt.json: tokenizer.model: file /nonexistent/tok512.model not found");
  auto no_model = d;
  no_model.erase("model");
  expect_error(no_model, "ckpt.json: tokenizer.model: missing");
  auto no_hash = d;
  no_hash.erase("hash");
  expect_error(no_hash, "ckpt.json: tokenizer.hash: missing");
  expect_error(nlohmann::json{{"type", "sentencepeace"}}, "\"sentencepiece\"");

  // the same bytes under another name have the same identity; other bytes another
  test::TempDir dir;
  const std::string bytes = test::read_text(tok512_model());
  test::write_text(dir / "copy.model", bytes);
  EXPECT_EQ(load_sentencepiece_tokenizer(dir / "copy.model")->identity(), id);
  if (fs::exists(tok512_bin())) {  // tok512.bin's bytes differ from tok512.model's
    const auto l2c = load_llama2c_tokenizer(tok512_bin(), 512);
    EXPECT_NE(l2c->identity().substr(l2c->identity().find(':')), id.substr(id.find(':')));
  }
}

}  // namespace
}  // namespace stretch
