// llama2.c's tokenizer.bin, bit-compatible with run.c's encode()/decode() (see tokenizer_llama2c.hpp).
//
// run.c rescans every adjacent pair after each merge (quadratic); here the candidate pairs sit in a heap ordered
// by (score descending, position ascending), which picks the same pair at every step: the current sequence keeps
// the order of the original positions, so "leftmost" is "smallest original position". Pair lookups use a table
// (left id, right id) -> merged id built once from every split of every token into two tokens.
#include "io/tokenizer_llama2c.hpp"

#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <unordered_map>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/hex.hpp"
#include "io/bpe_merge.hpp"

namespace stretch {
namespace fs = std::filesystem;

namespace {

static_assert(std::endian::native == std::endian::little, "tokenizer.bin is read as little-endian");

constexpr float kMinMergeScore = -1e10f;  // run.c's initial best_score: a pair must score above it
constexpr int kNumBytes = 256;
constexpr int kFirstByteId = 3;  // ids 3..258 are <0x00>..<0xFF>

struct StringViewHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return static_cast<std::size_t>(XXH3_64bits(s.data(), s.size()));
  }
};

std::string byte_token_name(int b) {
  static const char* digits = "0123456789ABCDEF";
  std::string s = "<0x";
  s.push_back(digits[b >> 4]);
  s.push_back(digits[b & 15]);
  s.push_back('>');
  return s;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// run.c: sscanf(piece, "<0x%02hhX>", &byte) == 1 -> the raw byte. Returns -1 when the piece is no byte token.
int parse_byte_piece(std::string_view piece) {
  if (piece.size() < 4 || piece.substr(0, 3) != "<0x") return -1;
  int v = hex_value(piece[3]);
  if (v < 0) return -1;
  if (piece.size() > 4 && hex_value(piece[4]) >= 0) v = v * 16 + hex_value(piece[4]);
  return v;
}

std::string json_str(std::string_view s) {
  return nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

class Llama2cTokenizer final : public Tokenizer {
 public:
  Llama2cTokenizer(const fs::path& path, int vocab_size);

  std::vector<std::int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const std::int32_t> ids) const override;
  int vocab_size() const override { return vocab_size_; }
  std::int32_t bos_id() const override { return kLlama2cBos; }
  std::int32_t eos_id() const override { return kLlama2cEos; }
  std::string type() const override { return "llama2c"; }
  std::string identity() const override { return "llama2c:" + hash_; }
  nlohmann::json describe() const override {
    return {{"type", "llama2c"}, {"path", path_.string()}, {"vocab_size", vocab_size_}, {"hash", hash_}};
  }
  const Llama2cVocab& table() const { return table_; }

 private:
  fs::path path_;
  std::string hash_;
  int vocab_size_ = 0;
  std::vector<std::string> vocab_;          // token strings as in the file
  std::vector<float> scores_;
  std::vector<std::string> piece_;          // what decode() prints for each id
  std::vector<std::string> piece_after_bos_;  // ... right after BOS
  std::unordered_map<std::string, std::int32_t, StringViewHash, std::equal_to<>> lookup_;  // first id wins
  std::unordered_map<std::uint64_t, std::int32_t> merges_;  // (left << 32 | right) -> id of the concatenation
  std::int32_t space_id_ = -1;
  Llama2cVocab table_;  // llama2c_vocab()
};

Llama2cTokenizer::Llama2cTokenizer(const fs::path& path, int vocab_size)
    : path_(fs::absolute(path).lexically_normal()), vocab_size_(vocab_size) {
  const std::string name = path.string();
  if (vocab_size < kFirstByteId + kNumBytes)
    throw InputError(name + ": vocab_size " + std::to_string(vocab_size) + " is too small for a llama2.c tokenizer " +
                     "(expected at least 259: <unk>, <s>, </s> and the 256 byte tokens)");
  const std::string bytes = read_file(path);
  {
    const XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    hash_ = to_hex(c.digest, 8);  // 16 hex digits
  }
  const std::string what = " (expected llama2.c's tokenizer.bin: int32 max_token_length, then per token float32 "
                           "score, int32 length, bytes)";
  std::size_t off = 0;
  auto read_i32 = [&](std::int32_t* v) {
    std::memcpy(v, bytes.data() + off, 4);
    off += 4;
  };
  if (bytes.size() < 4) throw InputError(name + ": truncated: " + std::to_string(bytes.size()) + " bytes" + what);
  std::int32_t max_len = 0;
  read_i32(&max_len);
  if (max_len <= 0)
    throw InputError(name + ": max_token_length is " + std::to_string(max_len) + " (expected > 0)" + what);

  const auto n = static_cast<std::size_t>(vocab_size);
  vocab_.reserve(n);
  scores_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (bytes.size() - off < 8)
      throw InputError(name + ": truncated: the file ends in token " + std::to_string(i) + " of " +
                       std::to_string(n) + " (is vocab_size right?)" + what);
    float score;
    std::memcpy(&score, bytes.data() + off, 4);
    off += 4;
    std::int32_t len;
    read_i32(&len);
    if (len < 0 || len > max_len)
      throw InputError(name + ": token " + std::to_string(i) + " has length " + std::to_string(len) +
                       " (expected 0.." + std::to_string(max_len) + ", the max_token_length)" + what);
    if (bytes.size() - off < static_cast<std::size_t>(len))
      throw InputError(name + ": truncated: token " + std::to_string(i) + " of " + std::to_string(n) + " has " +
                       std::to_string(len) + " bytes but the file ends after " +
                       std::to_string(bytes.size() - off) + what);
    vocab_.emplace_back(bytes.data() + off, static_cast<std::size_t>(len));
    scores_.push_back(score);
    off += static_cast<std::size_t>(len);
  }
  table_.max_token_length = max_len;
  if (off != bytes.size())
    throw InputError(name + ": " + std::to_string(bytes.size() - off) + " trailing bytes after the " +
                     std::to_string(n) + " tokens (the file holds more tokens than vocab_size " +
                     std::to_string(n) + "; is vocab_size right?)" + what);

  for (int b = 0; b < kNumBytes; ++b) {
    const std::string want = byte_token_name(b);
    if (vocab_[static_cast<std::size_t>(kFirstByteId + b)] != want)
      throw InputError(name + ": token " + std::to_string(kFirstByteId + b) + " is " +
                       json_str(vocab_[static_cast<std::size_t>(kFirstByteId + b)]) + " (expected the byte token " +
                       want + "; byte fallback needs <0x00>..<0xFF> at ids 3..258)");
  }
  table_.pieces = vocab_;
  table_.scores = scores_;
  lookup_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) lookup_.emplace(vocab_[i], static_cast<std::int32_t>(i));
  {
    auto f = lookup_.find(std::string_view(" "));
    if (f == lookup_.end())
      throw InputError(name + ": no token \" \" (a single space), needed for the dummy prefix" + what);
    space_id_ = f->second;
  }
  // Merge table: every way to write a token as the concatenation of two tokens. Only mergeable targets (score
  // above run.c's -1e10 floor; NaN never is) are entered, so lookups need no score check.
  for (std::size_t i = 0; i < n; ++i) {
    const std::string& s = vocab_[i];
    if (!(scores_[i] > kMinMergeScore)) continue;
    if (lookup_.at(s) != static_cast<std::int32_t>(i)) continue;  // a duplicate: lookups find the first one
    for (std::size_t k = 1; k < s.size(); ++k) {
      auto l = lookup_.find(std::string_view(s).substr(0, k));
      auto r = lookup_.find(std::string_view(s).substr(k));
      if (l == lookup_.end() || r == lookup_.end()) continue;
      merges_.emplace((static_cast<std::uint64_t>(l->second) << 32) | static_cast<std::uint32_t>(r->second),
                      static_cast<std::int32_t>(i));
    }
  }
  // decode pieces
  piece_.resize(n);
  piece_after_bos_.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::string& s = vocab_[i];
    const int b = parse_byte_piece(s);
    piece_[i] = b >= 0 ? std::string(1, static_cast<char>(b)) : s;
    if (!s.empty() && s[0] == ' ') {
      const int b2 = parse_byte_piece(std::string_view(s).substr(1));
      piece_after_bos_[i] = b2 >= 0 ? std::string(1, static_cast<char>(b2)) : s.substr(1);
    } else {
      piece_after_bos_[i] = piece_[i];
    }
  }
  piece_[kLlama2cBos] = piece_after_bos_[kLlama2cBos] = "";
  piece_[kLlama2cEos] = piece_after_bos_[kLlama2cEos] = "";
}

std::vector<std::int32_t> Llama2cTokenizer::encode(std::string_view text) const {
  std::vector<std::int32_t> id;
  if (text.empty()) return id;
  id.reserve(text.size() + 1);
  id.push_back(space_id_);
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  // run.c's code point grouping: a byte, then following continuation bytes (10xxxxxx) while fewer than 4 taken.
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i + 1;
    while (j < n && (s[j] & 0xC0) == 0x80 && j - i < 4) ++j;
    auto f = lookup_.find(text.substr(i, j - i));
    if (f != lookup_.end()) {
      id.push_back(f->second);
    } else {
      for (std::size_t k = i; k < j; ++k) id.push_back(static_cast<std::int32_t>(s[k]) + kFirstByteId);
    }
    i = j;
  }
  bpe_merge(id, [&](std::int32_t l, std::int32_t r) -> std::optional<BpeMerge> {
    auto f = merges_.find((static_cast<std::uint64_t>(l) << 32) | static_cast<std::uint32_t>(r));
    if (f == merges_.end()) return std::nullopt;
    return BpeMerge{-static_cast<double>(scores_[static_cast<std::size_t>(f->second)]), f->second};
  });
  return id;
}

std::string Llama2cTokenizer::decode(std::span<const std::int32_t> ids) const {
  std::string out;
  out.reserve(ids.size() * 4);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::int32_t t = ids[i];
    if (t < 0 || t >= vocab_size_)
      throw InputError("llama2c tokenizer: token id " + std::to_string(t) + " at position " + std::to_string(i) +
                       " is not in the vocabulary (ids 0.." + std::to_string(vocab_size_ - 1) + ")");
    const bool after_bos = i > 0 && ids[i - 1] == kLlama2cBos;
    out += after_bos ? piece_after_bos_[static_cast<std::size_t>(t)] : piece_[static_cast<std::size_t>(t)];
  }
  return out;
}

}  // namespace

const Llama2cVocab* llama2c_vocab(const Tokenizer& t) {
  const auto* l = dynamic_cast<const Llama2cTokenizer*>(&t);
  return l ? &l->table() : nullptr;
}

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const fs::path& path, int vocab_size) {
  return std::make_unique<Llama2cTokenizer>(path, vocab_size);
}

std::vector<std::int32_t> llama2c_encode_with_bos(const Tokenizer& tok, std::string_view text) {
  std::vector<std::int32_t> ids{kLlama2cBos};
  const auto rest = tok.encode(text);
  ids.insert(ids.end(), rest.begin(), rest.end());
  return ids;
}

std::unique_ptr<Tokenizer> llama2c_tokenizer_from_json(const nlohmann::json& j, const std::string& source) {
  auto bad = [&](const std::string& field, const std::string& what) {
    return InputError(source + ": tokenizer." + field + ": " + what);
  };
  if (!j.is_object()) throw InputError(source + ": tokenizer: expected a JSON object");
  auto p = j.find("path");
  if (p == j.end() || !p->is_string() || p->get<std::string>().empty())
    throw bad("path", "missing (expected the path of llama2.c's tokenizer.bin)");
  const fs::path path = p->get<std::string>();
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    throw bad("path", "file " + path.string() + " not found (the tokenizer file must stay where it was when the "
                      "checkpoint was written)");
  auto v = j.find("vocab_size");
  if (v == j.end() || !v->is_number_integer() || v->get<std::int64_t>() <= 0 || v->get<std::int64_t>() > (1 << 30))
    throw bad("vocab_size", "missing or not a positive integer (expected the number of tokens, e.g. 512)");
  auto h = j.find("hash");
  if (h == j.end() || !h->is_string()) throw bad("hash", "missing (expected the hash of the tokenizer file)");
  auto tok = load_llama2c_tokenizer(path, static_cast<int>(v->get<std::int64_t>()));
  if (tok->identity() != "llama2c:" + h->get<std::string>())
    throw bad("hash", "the file " + path.string() + " hashes to " + tok->describe()["hash"].get<std::string>() +
                          ", but the description says " + h->get<std::string>() + " (the tokenizer file changed)");
  return tok;
}

void write_llama2c_tokenizer(const fs::path& path, const Llama2cVocab& v) {
  if (v.pieces.size() != v.scores.size())
    throw ConfigError("tokenizer.bin: " + std::to_string(v.pieces.size()) + " pieces but " +
                      std::to_string(v.scores.size()) + " scores");
  std::int32_t max_len = v.max_token_length;
  for (auto& p : v.pieces) max_len = std::max(max_len, static_cast<std::int32_t>(p.size()));
  std::string out(reinterpret_cast<const char*>(&max_len), 4);
  for (std::size_t i = 0; i < v.pieces.size(); i++) {
    const float score = v.scores[i];
    const std::int32_t len = static_cast<std::int32_t>(v.pieces[i].size());
    out.append(reinterpret_cast<const char*>(&score), 4);
    out.append(reinterpret_cast<const char*>(&len), 4);
    out += v.pieces[i];
  }
  write_file_atomic(path, out);
}

}  // namespace stretch
