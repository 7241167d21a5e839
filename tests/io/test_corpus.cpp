#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "io/corpus.hpp"
#include "io/io_test_util.hpp"

namespace stretch {
namespace {
namespace fs = std::filesystem;
using testing::TempDir;

// read_corpus_text on one file holding `bytes` must fail naming the file, the offset and each needle.
void expect_bad_utf8(const std::string& bytes, std::size_t offset, std::initializer_list<const char*> needles = {}) {
  TempDir dir;
  const auto p = dir.write("bad.txt", bytes);
  try {
    read_corpus_text({p});
    ADD_FAILURE() << "expected InputError for offset " << offset;
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind(p.string() + ": ", 0), 0u) << m;
    EXPECT_NE(m.find("invalid UTF-8 at byte offset " + std::to_string(offset) + " "), std::string::npos) << m;
    for (const char* n : needles) EXPECT_NE(m.find(n), std::string::npos) << "missing '" << n << "' in: " << m;
  }
}

TEST(Corpus, ValidatesUtf8) {
  expect_bad_utf8("hello\xC0\x80 world", 5, {"0xC0 0x80", "line 1"});       // overlong NUL
  expect_bad_utf8("ab\xE0\x80\xAF", 2);                                      // overlong 3-byte '/'
  expect_bad_utf8("ok\n\xF0\x82\x82\xAC", 3, {"line 2"});                    // overlong 4-byte
  expect_bad_utf8("x\xED\xA0\x80y", 1, {"0xED 0xA0 0x80"});                  // surrogate U+D800
  expect_bad_utf8("\xED\xBF\xBF", 0);                                         // surrogate U+DFFF
  expect_bad_utf8("max \xF4\x90\x80\x80", 4);                                 // U+110000
  expect_bad_utf8("\xF5\x80\x80\x80", 0);                                     // lead byte past U+10FFFF
  expect_bad_utf8("stray \x80 byte", 6);                                      // lone continuation
  expect_bad_utf8("cut at end \xE2\x82", 11);                                 // truncated sequence
  expect_bad_utf8("\xFF", 0);
  std::string long_ascii(1000, 'a');
  long_ascii += "\n\n\n\xC3";  // past the 8-byte fast path, with line counting
  expect_bad_utf8(long_ascii, 1003, {"line 4"});

  TempDir dir;
  const std::string good = "aé€😀\xF4\x8F\xBF\xBF z\n";  // 1- to 4-byte sequences, U+10FFFF included
  EXPECT_EQ(read_corpus_text({dir.write("good.txt", good)}), good);
}

TEST(Corpus, JoinsFilesAndRejectsEmptyOrMissing) {
  TempDir dir;
  const auto a = dir.write("a.txt", "first");
  const auto b = dir.write("b.txt", "second\n");
  EXPECT_EQ(read_corpus_text({a, b}), "first\n\nsecond\n");
  const auto e = dir.write("empty.txt", "");
  try {
    read_corpus_text({a, e});
    FAIL() << "expected InputError";
  } catch (const InputError& err) {
    EXPECT_EQ(std::string(err.what()), e.string() + ": empty corpus file");
  }
  try {
    read_corpus_text({a, dir / "missing.txt"});
    FAIL() << "expected InputError";
  } catch (const InputError& err) {
    EXPECT_NE(std::string(err.what()).find("missing.txt"), std::string::npos) << err.what();
  }
  EXPECT_THROW(read_corpus_text({}), InputError);
}

TEST(Corpus, TokenCacheHitsAndRegenerates) {
  TempDir dir;
  const auto a = dir.write("a.txt", "Hello, wörld!\n");
  const auto b = dir.write("b.txt", "Second file.");
  const auto cache = dir / "cache";  // created on demand
  auto tok = make_byte_tokenizer();
  const auto want = tok->encode(read_corpus_text({a, b}));

  CorpusStats s1;
  EXPECT_EQ(load_corpus_tokens({a, b}, *tok, cache, &s1), want);
  EXPECT_FALSE(s1.from_cache);
  EXPECT_EQ(s1.text_bytes, want.size());
  ASSERT_TRUE(fs::exists(s1.cache_file));
  EXPECT_EQ(s1.cache_file.parent_path(), cache);
  EXPECT_EQ(s1.cache_file.extension(), ".tokens");
  EXPECT_EQ(fs::file_size(s1.cache_file), 32 + 2 * want.size());  // u16 tokens for a 256-token vocabulary
  const std::string bytes = read_file(s1.cache_file);
  EXPECT_EQ(bytes.substr(0, 8), "STRTOK01");

  CorpusStats s2;
  EXPECT_EQ(load_corpus_tokens({a, b}, *tok, cache, &s2), want);
  EXPECT_TRUE(s2.from_cache);
  EXPECT_EQ(s2.cache_file, s1.cache_file);
  EXPECT_EQ(s2.text_bytes, want.size());

  // Corruptions: each is detected, the tokens regenerated and the cache rewritten.
  std::vector<std::string> corrupt = {
      "",                                      // empty
      bytes.substr(0, 20),                     // truncated header
      bytes.substr(0, bytes.size() - 1),       // truncated tokens
      "XTRTOK01" + bytes.substr(8),            // magic
      bytes + "xx",                            // trailing bytes (count disagrees with size)
  };
  std::string v = bytes;
  v[8] = 2;  // version
  corrupt.push_back(v);
  v = bytes;
  v[12] = 4;  // token width
  corrupt.push_back(v);
  v = bytes;
  v[24] ^= 1;  // text bytes
  corrupt.push_back(v);
  v = bytes;
  v[33] = 1;  // first token 0x0148 >= 256
  corrupt.push_back(v);
  for (std::size_t i = 0; i < corrupt.size(); ++i) {
    write_file_atomic(s1.cache_file, corrupt[i]);
    CorpusStats s;
    EXPECT_EQ(load_corpus_tokens({a, b}, *tok, cache, &s), want) << "corruption " << i;
    EXPECT_FALSE(s.from_cache) << "corruption " << i;
    EXPECT_EQ(read_file(s1.cache_file), bytes) << "corruption " << i;
    CorpusStats again;
    load_corpus_tokens({a, b}, *tok, cache, &again);
    EXPECT_TRUE(again.from_cache) << "corruption " << i;
  }
}

TEST(Corpus, CacheKeyFollowsContentOrderAndTokenizer) {
  TempDir dir;
  const auto a = dir.write("a.txt", "alpha");
  const auto b = dir.write("b.txt", "beta");
  auto tok = make_byte_tokenizer();
  CorpusStats ab, ba, changed;
  load_corpus_tokens({a, b}, *tok, dir / "c", &ab);
  load_corpus_tokens({b, a}, *tok, dir / "c", &ba);
  EXPECT_NE(ab.cache_file, ba.cache_file);
  dir.write("a.txt", "alphb");
  EXPECT_EQ(load_corpus_tokens({a, b}, *tok, dir / "c", &changed), tok->encode("alphb\n\nbeta"));
  EXPECT_FALSE(changed.from_cache);
  EXPECT_NE(changed.cache_file, ab.cache_file);
}

TEST(Corpus, NoCacheDirMeansNoCache) {
  TempDir dir;
  const auto a = dir.write("a.txt", "abc");
  auto tok = make_byte_tokenizer();
  CorpusStats s;
  s.from_cache = true;
  EXPECT_EQ(load_corpus_tokens({a}, *tok, "", &s), (std::vector<std::int32_t>{97, 98, 99}));
  EXPECT_FALSE(s.from_cache);
  EXPECT_TRUE(s.cache_file.empty());
  EXPECT_EQ(s.text_bytes, 3u);
  EXPECT_EQ(load_corpus_tokens({a}, *tok, ""), (std::vector<std::int32_t>{97, 98, 99}));  // stats optional
}

TEST(Corpus, Gpt2TokensCacheAsU16) {
  const auto data = testing::shared_data_dir() / "gpt2-bpe";
  if (!fs::exists(data / "encoder.json")) GTEST_SKIP() << "GPT-2 BPE files not found at " << data.string();
  TempDir dir;
  const auto a = dir.write("a.txt", "The quick brown fox jumps over the lazy dog. Ünïcödé!");
  auto tok = load_gpt2_tokenizer(data / "encoder.json", data / "vocab.bpe");
  CorpusStats s1, s2;
  const auto ids = load_corpus_tokens({a}, *tok, dir / "cache", &s1);
  EXPECT_EQ(ids, tok->encode(read_file(a)));
  EXPECT_EQ(fs::file_size(s1.cache_file), 32 + 2 * ids.size());
  EXPECT_EQ(load_corpus_tokens({a}, *tok, dir / "cache", &s2), ids);
  EXPECT_TRUE(s2.from_cache);
  // a different tokenizer never reads this cache
  CorpusStats s3;
  load_corpus_tokens({a}, *make_byte_tokenizer(), dir / "cache", &s3);
  EXPECT_FALSE(s3.from_cache);
  EXPECT_NE(s3.cache_file, s1.cache_file);
}

TEST(Corpus, DefaultCacheDir) {
  auto save = [](const char* n) -> std::optional<std::string> {
    const char* v = std::getenv(n);
    return v ? std::optional<std::string>(v) : std::nullopt;
  };
  const auto sc = save("STRETCH_CACHE"), xdg = save("XDG_CACHE_HOME"), home = save("HOME");
  ::setenv("STRETCH_CACHE", "/tmp/sc", 1);
  ::setenv("XDG_CACHE_HOME", "/tmp/xdg", 1);
  ::setenv("HOME", "/tmp/home", 1);
  EXPECT_EQ(default_cache_dir(), fs::path("/tmp/sc"));
  ::unsetenv("STRETCH_CACHE");
  EXPECT_EQ(default_cache_dir(), fs::path("/tmp/xdg/stretch"));
  ::setenv("XDG_CACHE_HOME", "", 1);
  EXPECT_EQ(default_cache_dir(), fs::path("/tmp/home/.cache/stretch"));
  ::unsetenv("XDG_CACHE_HOME");
  ::unsetenv("HOME");
  EXPECT_EQ(default_cache_dir(), fs::path(".stretch-cache"));
  auto restore = [](const char* n, const std::optional<std::string>& v) {
    if (v) ::setenv(n, v->c_str(), 1);
    else ::unsetenv(n);
  };
  restore("STRETCH_CACHE", sc);
  restore("XDG_CACHE_HOME", xdg);
  restore("HOME", home);
}

}  // namespace
}  // namespace stretch
