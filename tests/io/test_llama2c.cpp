// llama2.c legacy checkpoint reader: synthetic files built here (round trip, every rejection), and the real
// stories260K.bin from ../shared/data (skipped when absent) checked against raw std::ifstream reads and against
// tests/io/data/stories260K_probe.json (an independent numpy read, written by tools/make_llama2c_fixture.py).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "io/io_test_util.hpp"
#include "io/llama2c.hpp"

namespace stretch {
namespace {
namespace fs = std::filesystem;
using testing::TempDir;

void put_i32(std::string& out, std::int32_t v) {
  const auto u = static_cast<std::uint32_t>(v);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((u >> (8 * i)) & 0xFF));
}
void put_f32(std::string& out, float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((u >> (8 * i)) & 0xFF));
}

std::string header(std::initializer_list<std::int32_t> h) {
  std::string out;
  for (auto v : h) put_i32(out, v);
  return out;
}

// Distinct, exactly representable value for element i of tensor number t.
float pattern(int t, std::size_t i) { return static_cast<float>(t * 100000 + static_cast<int>(i)) * 0.25f; }

struct Tiny {
  int dim = 8, hidden = 12, layers = 2, heads = 4, kv_heads = 2, vocab = 10, seq_len = 6;
  bool shared = true;
  int hs() const { return dim / heads; }
  // (name, count) in file order, RoPE tables included.
  std::vector<std::pair<std::string, std::size_t>> tensors() const {
    const std::size_t d = dim, h = hidden, L = layers, V = vocab, T = seq_len, q = heads * hs(),
                      kv = kv_heads * hs();
    std::vector<std::pair<std::string, std::size_t>> t = {
        {"tok", V * d},     {"rms_att", L * d}, {"wq", L * q * d},      {"wk", L * kv * d},
        {"wv", L * kv * d}, {"wo", L * d * q},  {"rms_ffn", L * d},     {"w1", L * h * d},
        {"w2", L * d * h},  {"w3", L * h * d},  {"rms_final", d},       {"freq_real", T * hs() / 2},
        {"freq_imag", T * hs() / 2}};
    if (!shared) t.emplace_back("wcls", V * d);
    return t;
  }
  std::string bytes() const {
    std::string out = header({dim, hidden, layers, heads, kv_heads, shared ? vocab : -vocab, seq_len});
    int ti = 0;
    for (const auto& [name, n] : tensors()) {
      const bool rope = name.rfind("freq_", 0) == 0;
      for (std::size_t i = 0; i < n; ++i) put_f32(out, rope ? -7777.f : pattern(ti, i));
      ++ti;
    }
    return out;
  }
};

void expect_pattern(const std::vector<float>& v, int t, std::size_t n, const char* name) {
  ASSERT_EQ(v.size(), n) << name;
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(v[i], pattern(t, i)) << name << "[" << i << "]";
}

// Reading `bytes` from a file must throw an InputError whose message starts with the file's name and
// contains every needle.
void expect_rejected(const std::string& bytes, std::initializer_list<const char*> needles) {
  TempDir dir;
  const auto path = dir.write("broken.bin", bytes);
  try {
    read_llama2c(path);
    ADD_FAILURE() << "expected InputError containing '" << *needles.begin() << "'";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind(path.string() + ": ", 0), 0u) << m;
    for (const char* n : needles) EXPECT_NE(m.find(n), std::string::npos) << "missing '" << n << "' in: " << m;
  }
}

TEST(Llama2c, TinySharedModelRoundTrips) {
  Tiny m;
  TempDir dir;
  const std::string bytes = m.bytes();
  ASSERT_EQ(bytes.size(), 28 + 4 * (10 * 8 + 2 * 8 + 2 * 8 * 8 * 2 + 2 * 4 * 8 * 2 + 2 * 8 + 3 * 2 * 12 * 8 + 8 +
                                    2 * 6 * 1));
  const auto w = read_llama2c(dir.write("tiny.bin", bytes));
  const auto& c = w.config;
  EXPECT_EQ(c.dim, 8);
  EXPECT_EQ(c.hidden_dim, 12);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.vocab_size, 10);
  EXPECT_EQ(c.seq_len, 6);
  EXPECT_TRUE(c.shared_classifier);
  EXPECT_EQ(c.head_size(), 2);
  EXPECT_EQ(c.kv_dim(), 4);
  EXPECT_EQ(llama2c_file_bytes(c), bytes.size());
  const auto t = m.tensors();
  expect_pattern(w.tok_embeddings, 0, t[0].second, "tok");
  expect_pattern(w.rms_att, 1, t[1].second, "rms_att");
  expect_pattern(w.wq, 2, t[2].second, "wq");
  expect_pattern(w.wk, 3, t[3].second, "wk");
  expect_pattern(w.wv, 4, t[4].second, "wv");
  expect_pattern(w.wo, 5, t[5].second, "wo");
  expect_pattern(w.rms_ffn, 6, t[6].second, "rms_ffn");
  expect_pattern(w.w1, 7, t[7].second, "w1");
  expect_pattern(w.w2, 8, t[8].second, "w2");
  expect_pattern(w.w3, 9, t[9].second, "w3");
  expect_pattern(w.rms_final, 10, t[10].second, "rms_final");
  EXPECT_TRUE(w.wcls.empty());
}

TEST(Llama2c, TinyUnsharedModelReadsWclsAfterTheRopeTables) {
  Tiny m;
  m.shared = false;
  m.heads = 2;  // head_size 4, kv_heads 2 (MHA)
  TempDir dir;
  const auto w = read_llama2c(dir.write("tiny.bin", m.bytes()));
  EXPECT_FALSE(w.config.shared_classifier);
  EXPECT_EQ(w.config.vocab_size, 10);  // positive even though the file says -10
  EXPECT_EQ(w.config.head_size(), 4);
  const auto t = m.tensors();
  ASSERT_EQ(t.size(), 14u);
  expect_pattern(w.wq, 2, t[2].second, "wq");
  expect_pattern(w.rms_final, 10, t[10].second, "rms_final");
  expect_pattern(w.wcls, 13, t[13].second, "wcls");  // the RoPE tables (-7777) were skipped
}

TEST(Llama2c, NonFiniteWeightsPassThrough) {
  Tiny m;
  std::string bytes = m.bytes();
  const float nan = std::nanf(""), inf = INFINITY;
  std::memcpy(bytes.data() + 28, &nan, 4);
  std::memcpy(bytes.data() + 32, &inf, 4);
  TempDir dir;
  const auto w = read_llama2c(dir.write("nan.bin", bytes));
  EXPECT_TRUE(std::isnan(w.tok_embeddings[0]));
  EXPECT_TRUE(std::isinf(w.tok_embeddings[1]));
}

TEST(Llama2c, MissingFileIsInputError) {
  TempDir dir;
  EXPECT_THROW(read_llama2c(dir / "nope.bin"), InputError);
}

TEST(Llama2c, RejectsTruncatedFiles) {
  const std::string good = Tiny{}.bytes();
  const std::string expected = std::to_string(good.size());
  expect_rejected("", {"shorter than the 28-byte header", "0 bytes"});
  expect_rejected(good.substr(0, 3), {"shorter than the 28-byte header", "3 bytes"});
  expect_rejected(good.substr(0, 27), {"shorter than the 28-byte header", "27 bytes"});
  for (std::size_t cut : {std::size_t{28}, std::size_t{29}, std::size_t{28 + 4 * 80}, std::size_t{28 + 4 * 81 + 2},
                          good.size() / 2, good.size() - 4 * 12, good.size() - 1}) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    expect_rejected(good.substr(0, cut),
                    {"truncated", ("expected " + expected + " bytes").c_str(), ("found " + std::to_string(cut)).c_str()});
  }
}

TEST(Llama2c, RejectsTrailingBytes) {
  const std::string good = Tiny{}.bytes();
  const std::string expected = std::to_string(good.size());
  expect_rejected(good + "x", {"trailing bytes", ("expected " + expected).c_str(),
                               ("found " + std::to_string(good.size() + 1)).c_str(), "1 extra"});
  // Claiming a shared classifier while the file carries a wcls: the wcls is trailing data.
  Tiny unshared;
  unshared.shared = false;
  std::string bytes = unshared.bytes();
  std::string h = header({8, 12, 2, 4, 2, 10, 6});
  bytes.replace(0, 28, h);
  expect_rejected(bytes, {"trailing bytes", (std::to_string(10 * 8 * 4) + " extra").c_str()});
}

TEST(Llama2c, RejectsBadHeaders) {
  const std::string body(4096, '\0');  // the header is checked before the size
  expect_rejected(header({0, 12, 2, 4, 2, 10, 6}) + body, {"dim = 0", "must be positive"});
  expect_rejected(header({8, -1, 2, 4, 2, 10, 6}) + body, {"hidden_dim = -1", "must be positive"});
  expect_rejected(header({8, 12, 0, 4, 2, 10, 6}) + body, {"n_layers = 0"});
  expect_rejected(header({8, 12, 2, 0, 2, 10, 6}) + body, {"n_heads = 0"});
  expect_rejected(header({8, 12, 2, 4, 0, 10, 6}) + body, {"n_kv_heads = 0"});
  expect_rejected(header({8, 12, 2, 4, 2, 0, 6}) + body, {"vocab_size = 0"});
  expect_rejected(header({8, 12, 2, 4, 2, 10, 0}) + body, {"seq_len = 0"});
  expect_rejected(header({8, 12, 2, 3, 1, 10, 6}) + body, {"dim = 8 is not divisible by n_heads = 3"});
  expect_rejected(header({8, 12, 2, 16, 1, 10, 6}) + body, {"dim = 8 is not divisible by n_heads = 16"});
  expect_rejected(header({8, 12, 2, 4, 3, 10, 6}) + body, {"n_heads = 4 is not divisible by n_kv_heads = 3"});
  expect_rejected(header({8, 12, 2, 4, 8, 10, 6}) + body, {"n_heads = 4 is not divisible by n_kv_heads = 8"});
  expect_rejected(header({12, 12, 2, 4, 2, 10, 6}) + body, {"head_size", "= 3 is odd"});
  expect_rejected(header({131072, 12, 2, 4, 2, 10, 6}) + body, {"dim = 131072", "absurd"});
  expect_rejected(header({8, 12, 2000, 4, 2, 10, 6}) + body, {"n_layers = 2000", "absurd"});
  expect_rejected(header({8, 12, 2, 4, 2, 20'000'000, 6}) + body, {"vocab_size = 20000000", "absurd"});
  expect_rejected(header({8, 12, 2, 4, 2, -20'000'000, 6}) + body, {"vocab_size = 20000000", "absurd"});
  expect_rejected(header({8, 12, 2, 4, 2, 10, 20'000'000}) + body, {"seq_len = 20000000", "absurd"});
  expect_rejected(header({8, 12, 2, 4, 2, INT32_MIN, 6}) + body, {"vocab_size"});
}

// ---- the real stories260K.bin ----

fs::path stories_bin() { return fs::path(STRETCH_SOURCE_DIR "/../shared/data/llama2c/stories260K.bin"); }

#define SKIP_WITHOUT_STORIES()                                                                                  \
  if (!fs::exists(stories_bin()))                                                                               \
  GTEST_SKIP() << "llama2.c model not found at " << stories_bin().string()                                     \
               << " (../shared/data is absent in a fresh clone; see ../shared/data/MANIFEST.md)"

const Llama2cWeights& stories() {
  static const Llama2cWeights w = read_llama2c(stories_bin());
  return w;
}

// The tensors the reader returns, in file order, with their PyTorch (out, in) shapes, for stories260K.
struct Named {
  const char* name;
  const std::vector<float>* data;
  std::vector<std::size_t> shape;
};
std::vector<Named> named(const Llama2cWeights& w) {
  return {{"tok_embeddings", &w.tok_embeddings, {512, 64}}, {"rms_att", &w.rms_att, {5, 64}},
          {"wq", &w.wq, {5, 64, 64}},                       {"wk", &w.wk, {5, 32, 64}},
          {"wv", &w.wv, {5, 32, 64}},                       {"wo", &w.wo, {5, 64, 64}},
          {"rms_ffn", &w.rms_ffn, {5, 64}},                 {"w1", &w.w1, {5, 172, 64}},
          {"w2", &w.w2, {5, 64, 172}},                      {"w3", &w.w3, {5, 172, 64}},
          {"rms_final", &w.rms_final, {64}}};
}

TEST(Llama2c, Stories260KConfig) {
  SKIP_WITHOUT_STORIES();
  const auto& c = stories().config;
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.seq_len, 512);
  EXPECT_EQ(c.head_size(), 8);
  EXPECT_EQ(c.kv_dim(), 32);
  EXPECT_TRUE(c.shared_classifier) << "stories260K.bin's header has vocab_size +512: classifier tied to tok_embeddings";
  EXPECT_TRUE(stories().wcls.empty());
  EXPECT_EQ(fs::file_size(stories_bin()), 1'056'540u);
  EXPECT_EQ(llama2c_file_bytes(c), 1'056'540u);
}

TEST(Llama2c, Stories260KTensorSizes) {
  SKIP_WITHOUT_STORIES();
  std::size_t total = 0;
  for (const auto& t : named(stories())) {
    std::size_t n = 1;
    for (auto d : t.shape) n *= d;
    EXPECT_EQ(t.data->size(), n) << t.name;
    total += t.data->size();
  }
  // Plus two RoPE tables of 512 x 4 floats: the whole file after the header.
  EXPECT_EQ(28 + 4 * (total + 2 * 512 * 4), 1'056'540u);
}

// Raw little-endian float at byte `offset`, read with std::ifstream (independent of read_file / the reader).
float raw_float(std::ifstream& in, std::uint64_t offset) {
  in.seekg(static_cast<std::streamoff>(offset));
  unsigned char b[4];
  in.read(reinterpret_cast<char*>(b), 4);
  EXPECT_TRUE(in.good()) << "offset " << offset;
  const std::uint32_t u = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(Llama2c, Stories260KMatchesRawReadsAtComputedOffsets) {
  SKIP_WITHOUT_STORIES();
  std::ifstream in(stories_bin(), std::ios::binary);
  ASSERT_TRUE(in);
  std::uint64_t offset = 28;
  for (const auto& t : named(stories())) {
    const auto& v = *t.data;
    for (std::size_t i : {std::size_t{0}, std::size_t{1}, v.size() / 3, v.size() / 2 + 7, v.size() - 1})
      EXPECT_EQ(v[i], raw_float(in, offset + 4 * i)) << t.name << "[" << i << "]";
    offset += 4 * v.size();
  }
  // Then the two skipped legacy RoPE tables (512 x 4 each): freq_cis_real[pos=1][0] = cos(1 * 10000^0) = cos(1),
  // freq_cis_imag[1][0] = sin(1); their end is the end of the file.
  EXPECT_NEAR(raw_float(in, offset + 4 * 4), std::cos(1.0f), 1e-6);
  EXPECT_NEAR(raw_float(in, offset + 4 * 2048 + 4 * 4), std::sin(1.0f), 1e-6);
  EXPECT_EQ(offset + 4 * 2 * 2048, 1'056'540u);
}

TEST(Llama2c, Stories260KMatchesNumpyProbe) {
  SKIP_WITHOUT_STORIES();
  const auto probe = nlohmann::json::parse(read_file(testing::test_data_dir() / "stories260K_probe.json"));
  const auto& c = stories().config;
  EXPECT_EQ(probe.at("header").get<std::vector<int>>(),
            (std::vector<int>{c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads,
                              c.shared_classifier ? c.vocab_size : -c.vocab_size, c.seq_len}));
  EXPECT_EQ(probe.at("shared_classifier").get<bool>(), c.shared_classifier);
  EXPECT_EQ(probe.at("file_bytes").get<std::uint64_t>(), llama2c_file_bytes(c));
  std::uint64_t offset = 28;
  for (const auto& t : named(stories())) {
    SCOPED_TRACE(t.name);
    const auto& p = probe.at("tensors").at(t.name);
    const auto& v = *t.data;
    EXPECT_EQ(p.at("shape").get<std::vector<std::size_t>>(), t.shape);
    EXPECT_EQ(p.at("numel").get<std::size_t>(), v.size());
    EXPECT_EQ(p.at("offset_bytes").get<std::uint64_t>(), offset);
    offset += 4 * v.size();
    const auto first = p.at("first").get<std::vector<double>>();
    ASSERT_EQ(first.size(), 4u);
    for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(v[i], static_cast<float>(first[i])) << i;
    double sum = 0;
    for (float x : v) sum += x;
    EXPECT_NEAR(sum, p.at("sum").get<double>(), 1e-9 * (1 + v.size())) << "sum";
  }
  EXPECT_FALSE(probe.at("tensors").contains("wcls"));
}

}  // namespace
}  // namespace stretch
