// Corpus text and token caches (see corpus.hpp).
//
// Cache key: XXH3-128 of the tokenizer's identity, the number of files, and each file's length and bytes, so
// the same files through the same tokenizer always find the same cache file, and anything else never does.
// A cache file is used only when its magic, version, token width, token count (against the file size), text
// size (against the text just read) and every token id (against the vocabulary) check out; otherwise the
// corpus is tokenized again and the cache file rewritten atomically. A cache that cannot be written (read-only
// folder, full disk) is not an error: the tokens are returned and stats->cache_file is left empty.
#include "io/corpus.hpp"

#include <unicode/utf8.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/hex.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"

namespace stretch {
namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'S', 'T', 'R', 'T', 'O', 'K', '0', '1'};
constexpr std::uint32_t kVersion = 1;
constexpr std::size_t kHeaderBytes = 8 + 4 + 4 + 8 + 8;

}  // namespace

// The byte offset, the line and the offending bytes of the first ill-formed sequence (see corpus.hpp).
void validate_utf8(const std::string& text, const std::string& source) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0, line = 1;
  while (i < n) {
    // fast path: 8 ASCII bytes at a time
    while (i + 8 <= n) {
      std::uint64_t w;
      std::memcpy(&w, s + i, 8);
      if (w & 0x8080808080808080ull) break;
      for (int k = 0; k < 8; ++k) line += s[i + static_cast<std::size_t>(k)] == '\n';
      i += 8;
    }
    if (i >= n) break;
    if (s[i] < 0x80) {
      line += s[i] == '\n';
      ++i;
      continue;
    }
    const unsigned char* p = s + i;
    std::int32_t k = 0;
    const auto len = static_cast<std::int32_t>(std::min<std::size_t>(n - i, 4));
    UChar32 c;
    U8_NEXT(p, k, len, c);
    if (c < 0) {
      std::string bytes;
      char buf[8];
      for (std::size_t b = i; b < n && b < i + 4; ++b) {
        std::snprintf(buf, sizeof buf, "%s0x%02X", b == i ? "" : " ", s[b]);
        bytes += buf;
      }
      throw InputError(source + ": invalid UTF-8 at byte offset " + std::to_string(i) + " (line " +
                       std::to_string(line) + ", bytes " + bytes +
                       "); expected UTF-8 text (no overlong forms, surrogates or code points past U+10FFFF)");
    }
    i += static_cast<std::size_t>(k);
  }
}

namespace {


// Reads, validates and joins the files; when `st` is given, feeds each file into the cache key.
std::string read_and_hash(const std::vector<fs::path>& files, XXH3_state_t* st) {
  if (files.empty()) throw InputError("corpus: no text files given");
  if (st) {
    const std::uint64_t count = files.size();
    XXH3_128bits_update(st, &count, sizeof count);
  }
  std::string text;
  for (std::size_t f = 0; f < files.size(); ++f) {
    std::string bytes = read_file(files[f]);
    if (bytes.empty()) throw InputError(files[f].string() + ": empty corpus file");
    validate_utf8(bytes, files[f].string());
    if (st) {
      const std::uint64_t len = bytes.size();
      XXH3_128bits_update(st, &len, sizeof len);
      XXH3_128bits_update(st, bytes.data(), bytes.size());
    }
    if (f == 0) {
      text = std::move(bytes);
    } else {
      text += "\n\n";
      text += bytes;
    }
  }
  return text;
}

template <class T>
void put_le(std::string& out, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((static_cast<std::uint64_t>(v) >> (8 * i)) & 0xff));
}
template <class T>
T get_le(const std::string& in, std::size_t pos) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[pos + i])) << (8 * i);
  return static_cast<T>(v);
}

std::uint32_t token_width(const Tokenizer& tok) { return tok.vocab_size() <= 65535 ? 2 : 4; }

// The cached tokens, or false when the file is absent or fails any check.
bool load_cache(const fs::path& file, const Tokenizer& tok, std::uint64_t text_bytes, std::vector<std::int32_t>* out) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return false;
  std::string b;
  try {
    b = read_file(file);
  } catch (const InputError&) {
    return false;
  }
  if (b.size() < kHeaderBytes || std::memcmp(b.data(), kMagic, 8) != 0) return false;
  if (get_le<std::uint32_t>(b, 8) != kVersion) return false;
  const std::uint32_t width = get_le<std::uint32_t>(b, 12);
  if (width != token_width(tok)) return false;
  const std::uint64_t count = get_le<std::uint64_t>(b, 16);
  if (get_le<std::uint64_t>(b, 24) != text_bytes) return false;
  if (count > (b.size() - kHeaderBytes) / width || kHeaderBytes + count * width != b.size()) return false;
  const auto vocab = static_cast<std::uint32_t>(tok.vocab_size());
  std::vector<std::int32_t> ids(static_cast<std::size_t>(count));
  const auto* p = reinterpret_cast<const unsigned char*>(b.data() + kHeaderBytes);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    std::uint32_t v;
    if (width == 2) {
      v = static_cast<std::uint32_t>(p[2 * i]) | static_cast<std::uint32_t>(p[2 * i + 1]) << 8;
    } else {
      v = static_cast<std::uint32_t>(p[4 * i]) | static_cast<std::uint32_t>(p[4 * i + 1]) << 8 |
          static_cast<std::uint32_t>(p[4 * i + 2]) << 16 | static_cast<std::uint32_t>(p[4 * i + 3]) << 24;
    }
    if (v >= vocab) return false;
    ids[i] = static_cast<std::int32_t>(v);
  }
  *out = std::move(ids);
  return true;
}

void write_cache(const fs::path& file, const Tokenizer& tok, std::uint64_t text_bytes,
                 const std::vector<std::int32_t>& ids) {
  const std::uint32_t width = token_width(tok);
  std::string b;
  b.reserve(kHeaderBytes + ids.size() * width);
  b.append(kMagic, 8);
  put_le<std::uint32_t>(b, kVersion);
  put_le<std::uint32_t>(b, width);
  put_le<std::uint64_t>(b, ids.size());
  put_le<std::uint64_t>(b, text_bytes);
  for (std::int32_t id : ids) {
    if (width == 2) put_le<std::uint16_t>(b, static_cast<std::uint16_t>(id));
    else put_le<std::uint32_t>(b, static_cast<std::uint32_t>(id));
  }
  write_file_atomic(file, b);
}

}  // namespace

std::string read_corpus_text(const std::vector<fs::path>& files) { return read_and_hash(files, nullptr); }

std::vector<std::int32_t> encode_segmented(const std::string& text, const Tokenizer& tok, const Segmenting& seg) {
  if (seg.separator.empty()) {
    std::vector<std::int32_t> ids;
    if (seg.bos >= 0) ids.push_back(seg.bos);
    auto rest = tok.encode(text);
    ids.insert(ids.end(), rest.begin(), rest.end());
    return ids;
  }
  std::vector<std::string_view> parts;
  const std::string_view all(text);
  for (std::size_t at = 0;;) {
    const std::size_t next = all.find(seg.separator, at);
    std::string_view part = all.substr(at, next == std::string_view::npos ? std::string_view::npos : next - at);
    // trim surrounding whitespace, as llama2.c's TinyStories preparation does (text.strip())
    const auto ws = [](char ch) { return ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r' || ch == '\f' || ch == '\v'; };
    while (!part.empty() && ws(part.front())) part.remove_prefix(1);
    while (!part.empty() && ws(part.back())) part.remove_suffix(1);
    parts.push_back(part);
    if (next == std::string_view::npos) break;
    at = next + seg.separator.size();
  }
  std::vector<std::vector<std::int32_t>> enc(parts.size());
  const long n = static_cast<long>(parts.size());
#pragma omp parallel for schedule(dynamic, 16)
  for (long i = 0; i < n; i++) enc[static_cast<std::size_t>(i)] = tok.encode(parts[static_cast<std::size_t>(i)]);
  std::vector<std::int32_t> ids;
  for (auto& e : enc) {
    if (seg.bos >= 0) ids.push_back(seg.bos);
    ids.insert(ids.end(), e.begin(), e.end());
  }
  return ids;
}

std::vector<std::int32_t> load_corpus_tokens(const std::vector<fs::path>& files, const Tokenizer& tok,
                                             const fs::path& cache_dir, CorpusStats* stats, const Segmenting& seg) {
  CorpusStats local;
  CorpusStats& st = stats ? *stats : local;
  st = CorpusStats{};
  if (cache_dir.empty()) {
    const std::string text = read_corpus_text(files);
    st.text_bytes = text.size();
    return encode_segmented(text, tok, seg);
  }

  XXH3_state_t* hs = XXH3_createState();
  if (!hs) throw std::bad_alloc();
  XXH3_128bits_reset(hs);
  const std::string id = tok.identity();
  const std::uint64_t id_len = id.size();
  XXH3_128bits_update(hs, &id_len, sizeof id_len);
  XXH3_128bits_update(hs, id.data(), id.size());
  if (!seg.is_plain()) {  // plain streams keep the keys they always had
    const std::string s = "segmenting-stripped:" + std::to_string(seg.bos) + ":" + seg.separator;
    XXH3_128bits_update(hs, s.data(), s.size());
  }
  std::string text;
  try {
    text = read_and_hash(files, hs);
  } catch (...) {
    XXH3_freeState(hs);
    throw;
  }
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits_digest(hs));
  XXH3_freeState(hs);
  st.text_bytes = text.size();
  const fs::path file = cache_dir / (to_hex(c.digest, sizeof c.digest) + ".tokens");

  std::vector<std::int32_t> ids;
  if (load_cache(file, tok, text.size(), &ids)) {
    st.from_cache = true;
    st.cache_file = file;
    return ids;
  }
  ids = encode_segmented(text, tok, seg);
  try {
    std::error_code ec;
    fs::create_directories(cache_dir, ec);
    write_cache(file, tok, text.size(), ids);
    st.cache_file = file;
  } catch (const IoError&) {
    // an unwritable cache only costs the next run a re-tokenization
  }
  return ids;
}

fs::path default_cache_dir() {
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v ? std::string(v) : std::string();
  };
  if (auto v = env("STRETCH_CACHE"); !v.empty()) return v;
  if (auto v = env("XDG_CACHE_HOME"); !v.empty()) return fs::path(v) / "stretch";
  if (auto v = env("HOME"); !v.empty()) return fs::path(v) / ".cache" / "stretch";
  return fs::path(".stretch-cache");
}

}  // namespace stretch
