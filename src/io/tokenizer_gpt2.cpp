// GPT-2 byte-level BPE (encoder.json + vocab.bpe), bit-compatible with OpenAI's encoder.py / tiktoken "gpt2".
//
//   1. pre-tokenization: GPT-2's regex 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      written out by hand over UTF-8 code points (classes from ICU: \s = White_Space, \p{L}, \p{N} by general
//      category). Bytes that are not valid UTF-8 count as "other" (the [^\s\p{L}\p{N}] class).
//   2. each piece's bytes start as single-byte tokens (via GPT-2's bytes_to_unicode alphabet), then the adjacent
//      pair with the lowest merge rank (line order in vocab.bpe) is merged, leftmost first, until no pair has a
//      rank. A heap keeps this O(n log n) even for pathological pieces (a megabyte of '=' signs).
//   3. pieces' ids are cached (piece bytes -> ids), so each distinct word is merged once.
//
// Thread safety: encode() and decode() may be called from several threads at once (the cache is behind a
// mutex, held only for a lookup or an insertion). "<|endoftext|>" in the text is ordinary text, never the
// special token (as in encoder.py and tiktoken's encode_ordinary).
#include <unicode/uchar.h>
#include <unicode/utf8.h>
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <unordered_set>
#include <mutex>
#include <unordered_map>

#include "core/hex.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"
#include "io/bpe_cache.hpp"
#include "io/bpe_merge.hpp"
#include "io/tokenizer.hpp"

namespace stretch {
namespace fs = std::filesystem;

namespace {

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 to U+0100 + n in order.
std::array<char32_t, 256> bytes_to_unicode() {
  std::array<char32_t, 256> m{};
  std::array<bool, 256> printable{};
  for (int b = '!'; b <= '~'; ++b) printable[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
  int n = 0;
  for (int b = 0; b < 256; ++b) m[b] = printable[b] ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
  return m;
}


// Decodes one code point at s[pos] (pos < n); returns it (negative for an ill-formed sequence) and sets *len to
// the bytes consumed (the maximal ill-formed subpart for a bad sequence, at least 1).
inline std::int32_t next_cp(const unsigned char* s, std::size_t pos, std::size_t n, std::size_t* len) {
  if (s[pos] < 0x80) {
    *len = 1;
    return s[pos];
  }
  const unsigned char* p = s + pos;
  std::int32_t i = 0;
  const auto length = static_cast<std::int32_t>(std::min<std::size_t>(n - pos, 4));
  UChar32 c;
  U8_NEXT(p, i, length, c);
  *len = static_cast<std::size_t>(i);
  return c;
}

enum CharClass : unsigned char { kWS, kL, kN, kOther };

struct ClassTable {
  std::array<CharClass, 128> ascii{};
  ClassTable() {
    for (int c = 0; c < 128; ++c) {
      if (u_hasBinaryProperty(c, UCHAR_WHITE_SPACE)) ascii[c] = kWS;
      else if (U_GET_GC_MASK(c) & U_GC_L_MASK) ascii[c] = kL;
      else if (U_GET_GC_MASK(c) & U_GC_N_MASK) ascii[c] = kN;
      else ascii[c] = kOther;
    }
  }
};
const ClassTable& class_table() {
  static const ClassTable t;
  return t;
}

inline CharClass classify(std::int32_t c) {
  if (c >= 0 && c < 128) return class_table().ascii[static_cast<std::size_t>(c)];
  if (c < 0) return kOther;  // ill-formed UTF-8
  if (u_hasBinaryProperty(c, UCHAR_WHITE_SPACE)) return kWS;
  const auto mask = U_GET_GC_MASK(c);
  if (mask & U_GC_L_MASK) return kL;
  if (mask & U_GC_N_MASK) return kN;
  return kOther;
}

// Calls emit(begin, end) for each pre-token of GPT-2's pattern, in order; the pieces tile the text exactly.
template <class Emit>
void pretokenize(std::string_view text, Emit&& emit) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    // 's|'t|'re|'ve|'m|'ll|'d  (case-sensitive, as in GPT-2)
    if (s[i] == '\'' && i + 1 < n) {
      const unsigned char a = s[i + 1];
      if (a == 's' || a == 't' || a == 'm' || a == 'd') {
        emit(i, i + 2);
        i += 2;
        continue;
      }
      if (i + 2 < n) {
        const unsigned char b = s[i + 2];
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
          emit(i, i + 3);
          i += 3;
          continue;
        }
      }
    }
    std::size_t len0;
    const CharClass c0 = classify(next_cp(s, i, n, &len0));
    //  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+
    std::size_t j = 0;
    CharClass run = kWS;
    if (s[i] == ' ' && i + 1 < n) {
      std::size_t len1;
      const CharClass c1 = classify(next_cp(s, i + 1, n, &len1));
      if (c1 != kWS) {
        run = c1;
        j = i + 1 + len1;
      }
    } else if (c0 != kWS) {
      run = c0;
      j = i + len0;
    }
    if (run != kWS) {
      while (j < n) {
        std::size_t len;
        if (classify(next_cp(s, j, n, &len)) != run) break;
        j += len;
      }
      emit(i, j);
      i = j;
      continue;
    }
    // \s+(?!\S) | \s+ : the whitespace run, less its last code point when a non-space follows (that one then
    // prefixes the next word, or stands alone when it is the run's only character).
    std::size_t last = i;
    j = i + len0;
    while (j < n) {
      std::size_t len;
      if (classify(next_cp(s, j, n, &len)) != kWS) break;
      last = j;
      j += len;
    }
    if (j < n && last > i) j = last;
    emit(i, j);
    i = j;
  }
}


struct Merge {
  std::int32_t rank;
  std::int32_t id;
};


class Gpt2Tokenizer final : public Tokenizer {
 public:
  Gpt2Tokenizer(const fs::path& encoder_json, const fs::path& vocab_bpe);

  std::vector<std::int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const std::int32_t> ids) const override;
  int vocab_size() const override { return vocab_size_; }
  std::string type() const override { return "gpt2"; }
  // <|endoftext|> separates documents in GPT-2's training data; it is the last id of the vocabulary
  std::int32_t eos_id() const override { return vocab_size_ - 1; }
  std::string identity() const override { return "gpt2:" + hash_; }
  BpeVocab vocab() const;
  nlohmann::json describe() const override {
    return {{"type", "gpt2"}, {"encoder", encoder_path_.string()}, {"vocab", vocab_path_.string()}, {"hash", hash_}};
  }

 private:
  void bpe(std::string_view piece, std::vector<std::int32_t>& out) const;


  fs::path encoder_path_, vocab_path_;
  std::string hash_;
  int vocab_size_ = 0;
  std::vector<std::string> id_bytes_;  // raw bytes of each id
  std::vector<bool> id_valid_;
  std::array<std::int32_t, 256> byte_id_{};
  std::unordered_map<std::uint64_t, Merge> merges_;  // (left id << 32 | right id) -> rank, merged id
  PieceCache cache_;
};

Gpt2Tokenizer::Gpt2Tokenizer(const fs::path& encoder_json, const fs::path& vocab_bpe)
    : encoder_path_(fs::absolute(encoder_json).lexically_normal()),
      vocab_path_(fs::absolute(vocab_bpe).lexically_normal()) {
  const std::string enc_bytes = read_file(encoder_json);
  const std::string bpe_bytes = read_file(vocab_bpe);
  const std::string enc_name = encoder_json.string(), bpe_name = vocab_bpe.string();

  // identity: both files' bytes (each preceded by its length, so the split is unambiguous)
  {
    XXH3_state_t* st = XXH3_createState();
    if (!st) throw std::bad_alloc();
    XXH3_128bits_reset(st);
    const std::uint64_t n1 = enc_bytes.size(), n2 = bpe_bytes.size();
    XXH3_128bits_update(st, &n1, sizeof n1);
    XXH3_128bits_update(st, enc_bytes.data(), enc_bytes.size());
    XXH3_128bits_update(st, &n2, sizeof n2);
    XXH3_128bits_update(st, bpe_bytes.data(), bpe_bytes.size());
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
    XXH3_freeState(st);
    hash_ = to_hex(c.digest, 8);  // 16 hex digits
  }

  // bytes_to_unicode and its inverse
  const auto b2u = bytes_to_unicode();
  std::array<int, 512> u2b;
  u2b.fill(-1);
  for (int b = 0; b < 256; ++b) u2b[b2u[b]] = b;

  // encoder.json: token string (in the byte alphabet) -> id
  nlohmann::json enc;
  try {
    enc = nlohmann::json::parse(enc_bytes);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(enc_name + ": invalid JSON (expected GPT-2's encoder.json, an object of token -> id): " +
                     e.what());
  }
  if (!enc.is_object() || enc.empty())
    throw InputError(enc_name + ": expected a non-empty JSON object of token string -> id (GPT-2's encoder.json)");
  constexpr std::int64_t kMaxId = 1 << 24;
  std::unordered_map<std::string, std::int32_t> str2id;
  str2id.reserve(enc.size());
  for (auto it = enc.begin(); it != enc.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<std::int64_t>() < 0 ||
        it.value().get<std::int64_t>() >= kMaxId)
      throw InputError(enc_name + ": token " + nlohmann::json(it.key()).dump() + " has id " + it.value().dump() +
                       " (expected an integer in [0, " + std::to_string(kMaxId) + "))");
    const auto id = static_cast<std::int32_t>(it.value().get<std::int64_t>());
    std::string raw;
    const auto* s = reinterpret_cast<const unsigned char*>(it.key().data());
    const std::size_t n = it.key().size();
    for (std::size_t p = 0; p < n;) {
      std::size_t len;
      const std::int32_t c = next_cp(s, p, n, &len);
      if (c < 0 || c >= 512 || u2b[static_cast<std::size_t>(c)] < 0) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "U+%04X", static_cast<unsigned>(c));
        throw InputError(enc_name + ": token " + nlohmann::json(it.key()).dump() + " contains " +
                         (c < 0 ? std::string("invalid UTF-8") : std::string(buf)) +
                         ", which is not in GPT-2's byte alphabet");
      }
      raw.push_back(static_cast<char>(u2b[static_cast<std::size_t>(c)]));
      p += len;
    }
    if (static_cast<std::size_t>(id) >= id_bytes_.size()) {
      id_bytes_.resize(static_cast<std::size_t>(id) + 1);
      id_valid_.resize(static_cast<std::size_t>(id) + 1, false);
    }
    if (id_valid_[static_cast<std::size_t>(id)])
      throw InputError(enc_name + ": id " + std::to_string(id) + " is given to two tokens");
    id_valid_[static_cast<std::size_t>(id)] = true;
    id_bytes_[static_cast<std::size_t>(id)] = std::move(raw);
    str2id.emplace(it.key(), id);
  }
  vocab_size_ = static_cast<int>(id_bytes_.size());
  for (int b = 0; b < 256; ++b) {
    std::string k;
    append_utf8(k, b2u[b]);
    auto f = str2id.find(k);
    if (f == str2id.end())
      throw InputError(enc_name + ": no token for byte " + std::to_string(b) + " (" + nlohmann::json(k).dump() +
                       "); a byte-level BPE vocabulary needs all 256");
    byte_id_[b] = f->second;
  }

  // vocab.bpe: "#version: 0.2", then one merge "left right" per line, rank = line order
  std::size_t pos = 0, line_no = 0;
  std::int32_t rank = 0;
  merges_.reserve(65536);
  while (pos < bpe_bytes.size()) {
    std::size_t eol = bpe_bytes.find('\n', pos);
    if (eol == std::string::npos) eol = bpe_bytes.size();
    std::string_view line(bpe_bytes.data() + pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line_no == 1) {
      if (line.rfind("#version", 0) != 0)
        throw InputError(bpe_name + ": line 1 is not \"#version: 0.2\" (expected GPT-2's vocab.bpe merges file)");
      continue;
    }
    if (line.empty()) continue;
    const std::size_t sp = line.find(' ');
    if (sp == std::string_view::npos || sp == 0 || sp + 1 >= line.size() ||
        line.find(' ', sp + 1) != std::string_view::npos)
      throw InputError(bpe_name + ": line " + std::to_string(line_no) +
                       " is not a merge (expected two tokens separated by one space)");
    const std::string a(line.substr(0, sp)), b(line.substr(sp + 1));
    auto fa = str2id.find(a), fb = str2id.find(b), fab = str2id.find(a + b);
    const std::string* missing = fa == str2id.end() ? &a : fb == str2id.end() ? &b : nullptr;
    if (missing)
      throw InputError(bpe_name + ": line " + std::to_string(line_no) + ": token " +
                       nlohmann::json(*missing).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                       " is not in " + enc_name);
    if (fab == str2id.end())
      throw InputError(bpe_name + ": line " + std::to_string(line_no) + ": merged token " +
                       nlohmann::json(a + b).dump() + " is not in " + enc_name);
    const std::uint64_t key = (static_cast<std::uint64_t>(fa->second) << 32) | static_cast<std::uint32_t>(fb->second);
    merges_.emplace(key, Merge{rank++, fab->second});  // a repeated pair keeps its first (lowest) rank
  }
  if (merges_.empty()) throw InputError(bpe_name + ": no merges (expected GPT-2's vocab.bpe)");
}

void Gpt2Tokenizer::bpe(std::string_view piece, std::vector<std::int32_t>& out) const {
  const std::size_t n = piece.size();
  if (n == 1) {
    out.push_back(byte_id_[static_cast<unsigned char>(piece[0])]);
    return;
  }
  std::vector<std::int32_t> id(n);
  for (std::size_t i = 0; i < n; ++i) id[i] = byte_id_[static_cast<unsigned char>(piece[i])];
  bpe_merge(id, [&](std::int32_t l, std::int32_t r) -> std::optional<BpeMerge> {
    auto f = merges_.find((static_cast<std::uint64_t>(l) << 32) | static_cast<std::uint32_t>(r));
    if (f == merges_.end()) return std::nullopt;
    return BpeMerge{static_cast<double>(f->second.rank), f->second.id};
  });
  out.insert(out.end(), id.begin(), id.end());
}

std::vector<std::int32_t> Gpt2Tokenizer::encode(std::string_view text) const {
  std::vector<std::int32_t> out;
  out.reserve(text.size() / 4 + 16);
  pretokenize(text, [&](std::size_t b, std::size_t e) {
    const std::string_view piece = text.substr(b, e - b);
    if (piece.size() == 1) {
      out.push_back(byte_id_[static_cast<unsigned char>(piece[0])]);
      return;
    }
    cache_.encode(piece, out, [&](std::string_view p, std::vector<std::int32_t>& o) { bpe(p, o); });
  });
  return out;
}

std::string Gpt2Tokenizer::decode(std::span<const std::int32_t> ids) const {
  std::string out;
  out.reserve(ids.size() * 4);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::int32_t id = ids[i];
    if (id < 0 || id >= vocab_size_ || !id_valid_[static_cast<std::size_t>(id)])
      throw InputError("gpt2 tokenizer: token id " + std::to_string(id) + " at position " + std::to_string(i) +
                       " is not in the vocabulary (ids 0.." + std::to_string(vocab_size_ - 1) + ")");
    out += id_bytes_[static_cast<std::size_t>(id)];
  }
  return out;
}

}  // namespace

std::unique_ptr<Tokenizer> load_gpt2_tokenizer(const fs::path& encoder_json, const fs::path& vocab_bpe) {
  return std::make_unique<Gpt2Tokenizer>(encoder_json, vocab_bpe);
}

namespace {
std::string byte_alphabet(std::string_view raw) {
  static const auto b2u = bytes_to_unicode();
  std::string s;
  for (char ch : raw) append_utf8(s, b2u[static_cast<unsigned char>(ch)]);
  return s;
}
}  // namespace

BpeVocab Gpt2Tokenizer::vocab() const {
  BpeVocab v;
  v.tokens.reserve(id_bytes_.size());
  for (std::size_t id = 0; id < id_bytes_.size(); id++) {
    if (!id_valid_[id])
      throw ConfigError(encoder_path_.string() + ": id " + std::to_string(id) +
                        " has no token (a GGUF vocabulary cannot have gaps)");
    v.tokens.push_back(byte_alphabet(id_bytes_[id]));
  }
  std::vector<std::pair<std::int32_t, std::uint64_t>> by_rank;
  by_rank.reserve(merges_.size());
  for (const auto& [k, m] : merges_) by_rank.emplace_back(m.rank, k);
  std::sort(by_rank.begin(), by_rank.end());
  v.merges.reserve(by_rank.size());
  for (const auto& [rank, k] : by_rank)
    v.merges.push_back(v.tokens[k >> 32] + " " + v.tokens[k & 0xffffffffu]);
  return v;
}

std::optional<BpeVocab> bpe_vocab(const Tokenizer& t) {
  if (const auto* g = dynamic_cast<const Gpt2Tokenizer*>(&t)) return g->vocab();
  if (t.type() == "byte") {
    BpeVocab v;
    for (int b = 0; b < 256; b++) v.tokens.push_back(byte_alphabet(std::string(1, static_cast<char>(b))));
    return v;
  }
  return std::nullopt;
}

bool is_byte_vocab(const BpeVocab& v) {
  if (v.tokens.size() != 256 || !v.merges.empty()) return false;
  for (int b = 0; b < 256; b++)
    if (v.tokens[static_cast<std::size_t>(b)] != byte_alphabet(std::string(1, static_cast<char>(b)))) return false;
  return true;
}

namespace {
// The checks of Gpt2Tokenizer's constructor on `v`; returns encoder.json and vocab.bpe's bytes.
std::pair<std::string, std::string> gpt2_files(const BpeVocab& v, const std::string& source) {
  const auto b2u = bytes_to_unicode();
  std::array<int, 512> u2b;
  u2b.fill(-1);
  for (int b = 0; b < 256; ++b) u2b[b2u[b]] = b;
  std::unordered_set<std::string> seen;
  nlohmann::json enc = nlohmann::json::object();
  for (std::size_t id = 0; id < v.tokens.size(); id++) {
    const std::string& t = v.tokens[id];
    const auto* s = reinterpret_cast<const unsigned char*>(t.data());
    if (t.empty()) throw InputError(source + ": token " + std::to_string(id) + " is empty");
    for (std::size_t p = 0; p < t.size();) {
      std::size_t len;
      const std::int32_t c = next_cp(s, p, t.size(), &len);
      if (c < 0 || c >= 512 || u2b[static_cast<std::size_t>(c)] < 0)
        throw InputError(source + ": token " + std::to_string(id) + " " + nlohmann::json(t).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace) +
                         " is not in GPT-2's byte alphabet");
      p += len;
    }
    if (!seen.insert(t).second)
      throw InputError(source + ": token " + std::to_string(id) + " " + nlohmann::json(t).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace) +
                       " appears twice");
    enc[t] = id;
  }
  for (int b = 0; b < 256; ++b) {
    std::string k;
    append_utf8(k, b2u[b]);
    if (!seen.count(k))
      throw InputError(source + ": no token for byte " + std::to_string(b) + "; a byte-level BPE vocabulary needs all 256");
  }
  if (v.merges.empty()) throw InputError(source + ": no merges (a GPT-2 BPE vocabulary has merges)");
  std::string bpe = "#version: 0.2\n";
  for (std::size_t i = 0; i < v.merges.size(); i++) {
    const std::string& m = v.merges[i];
    const std::size_t sp = m.find(' ');
    const bool ok = sp != std::string::npos && sp > 0 && sp + 1 < m.size() && m.find(' ', sp + 1) == std::string::npos &&
                    seen.count(m.substr(0, sp)) && seen.count(m.substr(sp + 1)) &&
                    seen.count(m.substr(0, sp) + m.substr(sp + 1));
    if (!ok)
      throw InputError(source + ": merge " + std::to_string(i) + " " + nlohmann::json(m).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace) +
                       " is not two known tokens whose concatenation is a token");
    bpe += m;
    bpe += '\n';
  }
  return {enc.dump(-1, ' ', true), bpe};
}
}  // namespace

void check_gpt2_vocab(const BpeVocab& v, const std::string& source) { gpt2_files(v, source); }

void write_gpt2_files(const fs::path& encoder_json, const fs::path& vocab_bpe, const BpeVocab& v,
                      const std::string& source) {
  const auto [enc, bpe] = gpt2_files(v, source);
  write_file_atomic(encoder_json, enc);
  write_file_atomic(vocab_bpe, bpe);
}

}  // namespace stretch
