// llama2.c legacy checkpoint reader and writer (see llama2c.hpp for the layout).
#include "io/llama2c.hpp"

#include <bit>
#include <cmath>
#include <cstring>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/mapped_file.hpp"

namespace stretch {

namespace {

constexpr std::int64_t kMaxDim = 65536;
constexpr std::int64_t kMaxHidden = std::int64_t{1} << 20;
constexpr std::int64_t kMaxLayers = 1024;
constexpr std::int64_t kMaxVocab = 10'000'000;
constexpr std::int64_t kMaxSeqLen = 10'000'000;

std::int32_t load_i32_le(const char* p) {
  std::uint32_t u = 0;
  for (int i = 3; i >= 0; --i) u = (u << 8) | static_cast<unsigned char>(p[i]);
  return static_cast<std::int32_t>(u);
}

// Element counts of the tensors in file order (the two skipped RoPE tables included).
struct Counts {
  std::uint64_t tok, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq_real, freq_imag, wcls;
  std::uint64_t total() const {
    return tok + rms_att + wq + wk + wv + wo + rms_ffn + w1 + w2 + w3 + rms_final + freq_real + freq_imag + wcls;
  }
};

Counts counts_of(const Llama2cConfig& c) {
  const std::uint64_t dim = static_cast<std::uint64_t>(c.dim), hid = static_cast<std::uint64_t>(c.hidden_dim),
                      L = static_cast<std::uint64_t>(c.n_layers), V = static_cast<std::uint64_t>(c.vocab_size),
                      T = static_cast<std::uint64_t>(c.seq_len), hs = static_cast<std::uint64_t>(c.head_size()),
                      q_dim = static_cast<std::uint64_t>(c.n_heads) * hs,
                      kv_dim = static_cast<std::uint64_t>(c.n_kv_heads) * hs;
  Counts k{};
  k.tok = V * dim;
  k.rms_att = L * dim;
  k.wq = L * q_dim * dim;
  k.wk = L * kv_dim * dim;
  k.wv = L * kv_dim * dim;
  k.wo = L * dim * q_dim;
  k.rms_ffn = L * dim;
  k.w1 = L * hid * dim;
  k.w2 = L * dim * hid;
  k.w3 = L * hid * dim;
  k.rms_final = dim;
  k.freq_real = T * hs / 2;
  k.freq_imag = T * hs / 2;
  k.wcls = c.shared_classifier ? 0 : V * dim;
  return k;
}

// Parses `bytes`; when they are `mapped`'s, each tensor's pages are released once copied.
Llama2cWeights parse(std::string_view bytes, const std::string& source, const MappedFile* mapped);

}  // namespace

std::uint64_t llama2c_file_bytes(const Llama2cConfig& c) {
  return kLlama2cHeaderBytes + counts_of(c).total() * sizeof(float);
}

Llama2cWeights parse_llama2c(const std::string& bytes, const std::string& source) {
  return parse(bytes, source, nullptr);
}

// The file is mapped, each tensor's pages released once copied: reading peaks at about the weights' size.
Llama2cWeights read_llama2c(const std::filesystem::path& path) {
  const MappedFile file = MappedFile::open(path);
  return parse(file.bytes(), path.string(), &file);
}

namespace {

Llama2cWeights parse(std::string_view bytes, const std::string& source, const MappedFile* mapped) {
  auto fail = [&](const std::string& what) { throw InputError(source + ": " + what); };
  if (bytes.size() < kLlama2cHeaderBytes)
    fail("not a llama2.c checkpoint: file is " + std::to_string(bytes.size()) + " bytes, shorter than the " +
         std::to_string(kLlama2cHeaderBytes) + "-byte header (7 int32)");

  std::int32_t h[7];
  for (int i = 0; i < 7; ++i) h[i] = load_i32_le(bytes.data() + 4 * i);
  static const char* const kNames[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size",
                                        "seq_len"};
  for (int i = 0; i < 7; ++i) {
    const bool bad = (i == 5) ? h[i] == 0 || h[i] == INT32_MIN : h[i] <= 0;
    if (bad)
      fail(std::string("bad llama2.c header: ") + kNames[i] + " = " + std::to_string(h[i]) +
           (i == 5 ? " (must be nonzero; its sign says whether the classifier is shared)" : " (must be positive)"));
  }
  auto check_max = [&](int i, std::int64_t value, std::int64_t max) {
    if (value > max)
      fail(std::string("bad llama2.c header: ") + kNames[i] + " = " + std::to_string(value) +
           " is absurd (at most " + std::to_string(max) + " accepted)");
  };
  check_max(0, h[0], kMaxDim);
  check_max(1, h[1], kMaxHidden);
  check_max(2, h[2], kMaxLayers);
  check_max(5, h[5] < 0 ? -static_cast<std::int64_t>(h[5]) : h[5], kMaxVocab);
  check_max(6, h[6], kMaxSeqLen);

  Llama2cConfig c;
  c.dim = h[0];
  c.hidden_dim = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  c.shared_classifier = h[5] > 0;
  c.vocab_size = h[5] > 0 ? h[5] : -h[5];
  c.seq_len = h[6];
  if (c.n_heads > c.dim || c.dim % c.n_heads != 0)
    fail("bad llama2.c header: dim = " + std::to_string(c.dim) + " is not divisible by n_heads = " +
         std::to_string(c.n_heads));
  if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0)
    fail("bad llama2.c header: n_heads = " + std::to_string(c.n_heads) + " is not divisible by n_kv_heads = " +
         std::to_string(c.n_kv_heads));
  if (c.head_size() % 2 != 0)
    fail("bad llama2.c header: head_size = dim / n_heads = " + std::to_string(c.head_size()) +
         " is odd (RoPE rotates pairs of features)");

  const Counts k = counts_of(c);
  const std::uint64_t expected = llama2c_file_bytes(c);
  const std::uint64_t actual = bytes.size();
  if (actual != expected) {
    const std::string desc = "dim " + std::to_string(c.dim) + ", hidden_dim " + std::to_string(c.hidden_dim) +
                             ", " + std::to_string(c.n_layers) + " layers, " + std::to_string(c.n_heads) +
                             " heads, " + std::to_string(c.n_kv_heads) + " kv heads, vocab " +
                             std::to_string(c.vocab_size) + (c.shared_classifier ? " (shared" : " (unshared") +
                             " classifier), seq_len " + std::to_string(c.seq_len);
    if (actual < expected)
      fail("truncated llama2.c checkpoint: expected " + std::to_string(expected) + " bytes for " + desc +
           ", found " + std::to_string(actual));
    fail("trailing bytes after llama2.c checkpoint: expected " + std::to_string(expected) + " bytes for " + desc +
         ", found " + std::to_string(actual) + " (" + std::to_string(actual - expected) + " extra)");
  }

  Llama2cWeights w;
  w.config = c;
  std::size_t pos = kLlama2cHeaderBytes;
  auto take = [&](std::vector<float>& dst, std::uint64_t n) {
    dst.resize(static_cast<std::size_t>(n));
    if (n) std::memcpy(dst.data(), bytes.data() + pos, static_cast<std::size_t>(n) * sizeof(float));
    if constexpr (std::endian::native == std::endian::big) {
      for (float& f : dst) {
        std::uint32_t u;
        std::memcpy(&u, &f, 4);
        u = (u >> 24) | ((u >> 8) & 0xFF00u) | ((u << 8) & 0xFF0000u) | (u << 24);
        std::memcpy(&f, &u, 4);
      }
    }
    if (mapped) mapped->release(pos, static_cast<std::size_t>(n) * sizeof(float));
    pos += static_cast<std::size_t>(n) * sizeof(float);
  };
  take(w.tok_embeddings, k.tok);
  take(w.rms_att, k.rms_att);
  take(w.wq, k.wq);
  take(w.wk, k.wk);
  take(w.wv, k.wv);
  take(w.wo, k.wo);
  take(w.rms_ffn, k.rms_ffn);
  take(w.w1, k.w1);
  take(w.w2, k.w2);
  take(w.w3, k.w3);
  take(w.rms_final, k.rms_final);
  pos += static_cast<std::size_t>(k.freq_real + k.freq_imag) * sizeof(float);  // legacy RoPE tables: skipped
  take(w.wcls, k.wcls);
  return w;
}

}  // namespace
}  // namespace stretch

namespace stretch {

std::string serialize_llama2c(const Llama2cWeights& w) {
  const Llama2cConfig& c = w.config;
  const std::size_t C = c.dim, KVD = c.kv_dim(), F = c.hidden_dim, NL = c.n_layers, V = c.vocab_size;
  const std::size_t half = static_cast<std::size_t>(c.head_size() / 2), S = c.seq_len;
  auto need = [&](const std::vector<float>& v, std::size_t n, const char* name) {
    if (v.size() != n)
      throw ConfigError(std::string("llama2.c export: tensor ") + name + " has " + std::to_string(v.size()) +
                        " floats, expected " + std::to_string(n));
  };
  need(w.tok_embeddings, V * C, "tok_embeddings");
  need(w.rms_att, NL * C, "rms_att");
  need(w.wq, NL * C * C, "wq");
  need(w.wk, NL * KVD * C, "wk");
  need(w.wv, NL * KVD * C, "wv");
  need(w.wo, NL * C * C, "wo");
  need(w.rms_ffn, NL * C, "rms_ffn");
  need(w.w1, NL * F * C, "w1");
  need(w.w2, NL * C * F, "w2");
  need(w.w3, NL * F * C, "w3");
  need(w.rms_final, C, "rms_final");
  if (!c.shared_classifier) need(w.wcls, V * C, "wcls");
  std::string out;
  out.reserve(llama2c_file_bytes(c));
  const std::int32_t header[7] = {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads,
                                  c.shared_classifier ? c.vocab_size : -c.vocab_size, c.seq_len};
  out.append(reinterpret_cast<const char*>(header), sizeof header);
  auto add = [&](const std::vector<float>& v) {
    out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  };
  for (auto* v : {&w.tok_embeddings, &w.rms_att, &w.wq, &w.wk, &w.wv, &w.wo, &w.rms_ffn, &w.w1, &w.w2, &w.w3,
                  &w.rms_final})
    add(*v);
  // the legacy RoPE tables run.c skips: cos / sin of pos * 10000^(-2i/hd)
  std::vector<float> re(S * half), im(S * half);
  for (std::size_t p = 0; p < S; p++)
    for (std::size_t i = 0; i < half; i++) {
      const double a = static_cast<double>(p) * std::pow(10000.0, -2.0 * static_cast<double>(i) / c.head_size());
      re[p * half + i] = static_cast<float>(std::cos(a));
      im[p * half + i] = static_cast<float>(std::sin(a));
    }
  add(re);
  add(im);
  if (!c.shared_classifier) add(w.wcls);
  return out;
}

void write_llama2c(const std::filesystem::path& path, const Llama2cWeights& w) {
  write_file_atomic(path, serialize_llama2c(w));
}

}  // namespace stretch
