// GPT-2 BPE against reference ids from tiktoken (tests/io/data/gpt2_ids.json, written by
// tools/make_gpt2_token_fixture.py). Needs the BPE files from ../shared/data/gpt2-bpe; skips without them.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "io/io_test_util.hpp"
#include "io/tokenizer.hpp"

namespace stretch {
namespace {
namespace fs = std::filesystem;
using testing::shared_data_dir;
using testing::TempDir;

fs::path encoder_json() { return shared_data_dir() / "gpt2-bpe" / "encoder.json"; }
fs::path vocab_bpe() { return shared_data_dir() / "gpt2-bpe" / "vocab.bpe"; }

#define REQUIRE_GPT2_FILES()                                                                              \
  do {                                                                                                    \
    if (!fs::exists(encoder_json()) || !fs::exists(vocab_bpe()))                                          \
      GTEST_SKIP() << "GPT-2 BPE files not found at " << (shared_data_dir() / "gpt2-bpe").string()      \
                   << " (../shared/data relative to the repository root; absent in a fresh clone)";     \
  } while (0)

const Tokenizer& gpt2() {
  static std::unique_ptr<Tokenizer> tok = load_gpt2_tokenizer(encoder_json(), vocab_bpe());
  return *tok;
}

TEST(Gpt2Tokenizer, MatchesReferenceIds) {
  REQUIRE_GPT2_FILES();
  const auto fixture = nlohmann::json::parse(read_file(testing::test_data_dir() / "gpt2_ids.json"));
  const auto& cases = fixture.at("cases");
  ASSERT_GE(cases.size(), 20u);
  std::size_t total = 0;
  for (const auto& c : cases) {
    const std::string text = c.at("text").get<std::string>();
    const auto want = c.at("ids").get<std::vector<std::int32_t>>();
    const auto got = gpt2().encode(text);
    EXPECT_EQ(got, want) << "text: " << nlohmann::json(text).dump();
    EXPECT_EQ(gpt2().decode(got), text);
    total += want.size();
  }
  EXPECT_GT(total, 1000u);  // the WikiText-2 validation prefix is in there
}

TEST(Gpt2Tokenizer, KnownIds) {
  REQUIRE_GPT2_FILES();
  EXPECT_EQ(gpt2().vocab_size(), 50257);
  EXPECT_EQ(gpt2().encode("Hello world"), (std::vector<std::int32_t>{15496, 995}));
  EXPECT_EQ(gpt2().decode(std::vector<std::int32_t>{50256}), "<|endoftext|>");
  EXPECT_FALSE(gpt2().is_byte_level());
  EXPECT_EQ(gpt2().type(), "gpt2");
}

TEST(Gpt2Tokenizer, DecodeRoundTripsUnicodeAndBrokenUtf8) {
  REQUIRE_GPT2_FILES();
  const std::string texts[] = {
      "Ünïcödé ŧëxŧ — 日本語 😀👍🏽 ٣٤٥ e\u0301\n\n  \t",
      "bad \xC0\x80 utf8 \xFF\xFE tail \xE2\x82",
      std::string(100000, '='),  // one huge piece: must not be quadratic
      std::string("nul\0inside", 10),
  };
  for (const auto& t : texts) EXPECT_EQ(gpt2().decode(gpt2().encode(t)), t);
}

TEST(Gpt2Tokenizer, RejectsInvalidIds) {
  REQUIRE_GPT2_FILES();
  for (std::int32_t id : {-1, 50257, 1 << 30}) {
    std::vector<std::int32_t> ids{464, id};
    try {
      gpt2().decode(ids);
      ADD_FAILURE() << "expected InputError for id " << id;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(std::to_string(id)), std::string::npos) << e.what();
    }
  }
}

TEST(Gpt2Tokenizer, ThreadSafeEncode) {
  REQUIRE_GPT2_FILES();
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "word" + std::to_string(i * 7919 % 1000) + " Ünïcödé's, ";
  const auto want = load_gpt2_tokenizer(encoder_json(), vocab_bpe())->encode(text);
  auto tok = load_gpt2_tokenizer(encoder_json(), vocab_bpe());
  std::vector<std::vector<std::int32_t>> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&, t] { got[static_cast<std::size_t>(t)] = tok->encode(text); });
  for (auto& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(g, want);
}

TEST(Gpt2Tokenizer, IdentityAndDescription) {
  REQUIRE_GPT2_FILES();
  const std::string id = gpt2().identity();
  EXPECT_EQ(id.rfind("gpt2:", 0), 0u);
  EXPECT_EQ(id.size(), 5u + 16u);
  const auto d = gpt2().describe();
  EXPECT_EQ(d.at("type"), "gpt2");
  EXPECT_TRUE(fs::path(d.at("encoder").get<std::string>()).is_absolute());
  EXPECT_TRUE(fs::path(d.at("vocab").get<std::string>()).is_absolute());
  EXPECT_EQ("gpt2:" + d.at("hash").get<std::string>(), id);
  auto again = tokenizer_from_json(d, "ckpt/config.json");
  EXPECT_EQ(again->identity(), id);
  EXPECT_EQ(again->encode("Hello world"), gpt2().encode("Hello world"));

  auto bad = d;
  bad["hash"] = "0123456789abcdef";
  try {
    tokenizer_from_json(bad, "ckpt/config.json");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.hash"), std::string::npos) << e.what();
  }
  bad = d;
  bad["vocab"] = "/nonexistent/vocab.bpe";
  try {
    tokenizer_from_json(bad, "ckpt/config.json");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.vocab"), std::string::npos) << e.what();
  }
}

TEST(Gpt2Tokenizer, IdentityFollowsFileBytes) {
  REQUIRE_GPT2_FILES();
  TempDir dir;
  const std::string enc = read_file(encoder_json());
  std::string bpe = read_file(vocab_bpe());
  auto e = dir.write("encoder.json", enc);
  auto v = dir.write("vocab.bpe", bpe);
  EXPECT_EQ(load_gpt2_tokenizer(e, v)->identity(), gpt2().identity());
  bpe.resize(bpe.size() - 100);  // drop the last merges
  bpe.resize(bpe.rfind('\n') + 1);
  v = dir.write("vocab.bpe", bpe);
  EXPECT_NE(load_gpt2_tokenizer(e, v)->identity(), gpt2().identity());
}

TEST(Gpt2Tokenizer, RejectsMalformedFiles) {
  REQUIRE_GPT2_FILES();
  TempDir dir;
  const auto enc = dir.write("encoder.json", read_file(encoder_json()));
  const auto bpe = dir.write("vocab.bpe", read_file(vocab_bpe()));
  auto expect_error = [](const fs::path& e, const fs::path& v, const std::string& file, const std::string& needle) {
    try {
      load_gpt2_tokenizer(e, v);
      ADD_FAILURE() << "expected InputError (" << needle << ")";
    } catch (const InputError& err) {
      const std::string m = err.what();
      EXPECT_NE(m.find(file), std::string::npos) << m;
      EXPECT_NE(m.find(needle), std::string::npos) << m;
    }
  };
  expect_error(dir / "missing.json", bpe, "missing.json", "no such file");
  expect_error(dir.write("bad.json", "{\"a\": 1,"), bpe, "bad.json", "invalid JSON");
  expect_error(dir.write("arr.json", "[1, 2]"), bpe, "arr.json", "expected a non-empty JSON object");
  expect_error(dir.write("neg.json", "{\"a\": -3}"), bpe, "neg.json", "expected an integer");
  expect_error(dir.write("few.json", "{\"a\": 0, \"b\": 1}"), bpe, "few.json", "no token for byte");
  expect_error(enc, dir.write("nover.bpe", "a b\n"), "nover.bpe", "#version");
  expect_error(enc, dir.write("threes.bpe", "#version: 0.2\na b c\n"), "threes.bpe", "line 2");
  expect_error(enc, dir.write("unk.bpe", "#version: 0.2\n\xC4\xA0 t\nzzzzqqqq xxyyzz\n"), "unk.bpe", "line 3");
  // a merge of bytes that are not UTF-8 is named in the message, not a JSON exception (found by fuzz/tokenizer_gpt2)
  expect_error(enc, dir.write("utf8.bpe", "#version: 0.2\n\x95\xff t\n"), "utf8.bpe", "line 2: token \"\xEF\xBF\xBD");
}

// Throughput on WikiText-2 train (10.9 MB); prints the time. The round trip checks every byte.
TEST(Gpt2Tokenizer, WikiText2TrainThroughput) {
  REQUIRE_GPT2_FILES();
  const fs::path train = shared_data_dir() / "wikitext" / "wikitext-2" / "wiki.train.tokens";
  if (!fs::exists(train)) GTEST_SKIP() << train.string() << " not found";
  const std::string text = read_file(train);
  auto tok = load_gpt2_tokenizer(encoder_json(), vocab_bpe());  // fresh cache
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = tok->encode(text);
  const auto t1 = std::chrono::steady_clock::now();
  const double s = std::chrono::duration<double>(t1 - t0).count();
  std::printf("[ info ] GPT-2 encode of %s: %.1f MB -> %zu tokens in %.2f s (%.1f MB/s)\n", train.filename().c_str(),
              text.size() / 1e6, ids.size(), s, text.size() / 1e6 / s);
  EXPECT_EQ(tok->decode(ids), text);
  EXPECT_GT(ids.size(), 2'000'000u);
}

}  // namespace
}  // namespace stretch

namespace stretch {
namespace {

// Random mixes of ASCII, whitespace, multi-byte characters and stray bytes: ids in range, decode(encode(s)) == s.
TEST(Gpt2Tokenizer, RandomTextRoundTrips) {
  if (!fs::exists(shared_data_dir() / "gpt2-bpe" / "encoder.json")) GTEST_SKIP() << "GPT-2 BPE files not found";
  const auto tok = load_gpt2_tokenizer(shared_data_dir() / "gpt2-bpe" / "encoder.json",
                                       shared_data_dir() / "gpt2-bpe" / "vocab.bpe");
  const char* atoms[] = {"a", "Z", "7", " ", "  ", "\n", "\t", "'", "'s", "'ll", ".", "!?", "é", "日本", "😀", "\xC2\xA0",
                         "\xE3\x80\x80", "\xFF", "\x80", "\xE2\x82", "e\xCC\x81", "٣", "\r\n", "--", "<|endoftext|>"};
  std::mt19937 rng(7);
  for (int iter = 0; iter < 300; ++iter) {
    std::string s;
    const int n = static_cast<int>(rng() % 60);
    for (int k = 0; k < n; ++k) s += atoms[rng() % (sizeof atoms / sizeof *atoms)];
    const auto ids = tok->encode(s);
    for (auto id : ids) ASSERT_TRUE(id >= 0 && id < tok->vocab_size());
    ASSERT_EQ(tok->decode(ids), s) << "iteration " << iter;
  }
}

}  // namespace
}  // namespace stretch
