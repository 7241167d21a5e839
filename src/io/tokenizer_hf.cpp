// Hugging Face tokenizer.json: loading, encode and decode (see io/tokenizer_hf.hpp for the semantics).
#include "io/tokenizer_hf.hpp"

#include <unicode/uchar.h>
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <limits>
#include <mutex>
#include <unordered_map>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/hex.hpp"
#include "io/bpe_cache.hpp"
#include "io/bpe_merge.hpp"
#include "io/tokenizer_hf_parts.hpp"

namespace stretch {
namespace fs = std::filesystem;
using hf::JsonAt;

namespace {

constexpr std::int64_t kMaxId = (1 << 22) - 1;  // 4M ids: far above any real vocabulary (Gemma's 256k)

using IdMap = std::unordered_map<std::string, std::int32_t, StringViewHash, std::equal_to<>>;

std::string jq(std::string_view s) {
  return nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

struct AddedToken {
  std::string content;
  std::int32_t id = -1;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
};

bool is_white_space(char32_t c) { return u_isUWhiteSpace(static_cast<UChar32>(c)); }
// Rust regex's Unicode \w: Alphabetic, marks, decimal numbers, connector punctuation, Join_Control.
bool is_word_char(char32_t c) {
  const auto u = static_cast<UChar32>(c);
  return u_hasBinaryProperty(u, UCHAR_ALPHABETIC) || (U_GET_GC_MASK(u) & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) ||
         u_hasBinaryProperty(u, UCHAR_JOIN_CONTROL);
}
// The code point ending at s[end) of valid UTF-8 (end > 0); sets *begin.
char32_t last_char(std::string_view s, std::size_t end, std::size_t* begin) {
  std::size_t b = end - 1;
  while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
  std::size_t len;
  *begin = b;
  return hf::utf8_at(s, b, &len);
}

// Splits text on added tokens as tokenizers' AddedVocabulary does with a leftmost-longest Aho-Corasick automaton.
class AddedMatcher {
 public:
  struct Seg {
    std::size_t b, e;
    std::int32_t id;  // -1: ordinary text
  };
  void add(std::string pattern, const AddedToken* tok) {
    if (pattern.empty()) return;
    by_first_[static_cast<unsigned char>(pattern[0])].push_back(static_cast<std::uint32_t>(entries_.size()));
    entries_.push_back({std::move(pattern), tok});
  }
  void finish() {  // longest first (stable: the first listed wins among equal patterns)
    for (auto& v : by_first_)
      std::stable_sort(v.begin(), v.end(), [&](std::uint32_t a, std::uint32_t b) {
        return entries_[a].pattern.size() > entries_[b].pattern.size();
      });
  }
  bool empty() const { return entries_.empty(); }

  void split(std::string_view s, std::vector<Seg>& out) const {
    const std::size_t n = s.size();
    std::size_t start_offset = 0;
    for (std::size_t i = 0; i < n;) {
      const auto& cands = by_first_[static_cast<unsigned char>(s[i])];
      const Entry* hit = nullptr;
      for (std::uint32_t k : cands)
        if (s.compare(i, entries_[k].pattern.size(), entries_[k].pattern) == 0) {
          hit = &entries_[k];
          break;
        }
      if (!hit) {
        ++i;
        continue;
      }
      std::size_t start = i, stop = i + hit->pattern.size();
      i = stop;  // the automaton goes on after the match, whatever becomes of it
      const AddedToken& t = *hit->tok;
      if (stop <= start_offset) continue;  // inside whitespace an earlier rstrip took
      start = std::max(start, start_offset);
      if (t.single_word) {
        std::size_t pb;
        const bool word_before = start > 0 && is_word_char(last_char(s, start, &pb));
        std::size_t len = 0;
        const bool word_after = stop < n && is_word_char(hf::utf8_at(s, stop, &len));
        if (word_before || word_after) continue;
      }
      if (t.lstrip) {
        std::size_t b = start;
        while (b > 0) {
          std::size_t pb;
          if (!is_white_space(last_char(s, b, &pb))) break;
          b = pb;
        }
        start = std::max(b, start_offset);
      }
      if (t.rstrip) {
        while (stop < n) {
          std::size_t len;
          if (!is_white_space(hf::utf8_at(s, stop, &len))) break;
          stop += len;
        }
      }
      if (start_offset < start) out.push_back({start_offset, start, -1});
      out.push_back({start, stop, t.id});
      start_offset = stop;
    }
    if (start_offset < n) out.push_back({start_offset, n, -1});
  }

 private:
  struct Entry {
    std::string pattern;
    const AddedToken* tok;
  };
  std::vector<Entry> entries_;
  std::array<std::vector<std::uint32_t>, 256> by_first_;
};

struct Merge {
  std::int32_t rank;
  std::int32_t id;
};

class HfTokenizer final : public Tokenizer {
 public:
  explicit HfTokenizer(const fs::path& dir);

  std::vector<std::int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const std::int32_t> ids) const override;
  int vocab_size() const override { return static_cast<int>(id_token_.size()); }
  std::string type() const override { return "hf"; }
  std::string identity() const override { return "hf:" + hash_; }
  nlohmann::json describe() const override { return {{"type", "hf"}, {"dir", dir_.string()}, {"hash", hash_}}; }
  std::int32_t bos_id() const override { return bos_; }
  std::int32_t eos_id() const override { return eos_; }
  const fs::path& dir() const { return dir_; }

 private:
  void load_model(const JsonAt& model);
  void load_added(const JsonAt& list);
  std::int32_t post_processor_bos(const JsonAt& j) const;
  std::int32_t token_id(const std::string& name, const JsonAt& where, const std::string& what) const;
  void encode_piece(std::string_view piece, std::vector<std::int32_t>& out) const;
  void merge_word(std::string_view piece, std::vector<std::int32_t>& out) const;


  fs::path dir_;
  std::string hash_;
  std::string tok_name_, cfg_name_, gen_name_;  // file names for messages
  std::unique_ptr<hf::Normalizer> normalizer_;
  std::unique_ptr<hf::PreTokenizer> pre_;
  std::unique_ptr<hf::Decoder> decoder_;
  // model
  IdMap vocab_;
  std::unordered_map<std::uint64_t, Merge> merges_;  // (left << 32 | right) -> rank, merged id
  std::array<std::int32_t, 128> ascii_id_{};         // the id of each ASCII character, or -1
  std::array<std::int32_t, 256> byte_token_{};       // the id of "<0xXX>", or -1
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  std::int32_t unk_ = -1;
  // added tokens, and the two matchers (raw text / normalized text)
  std::vector<AddedToken> added_;
  IdMap added_ids_;
  AddedMatcher raw_, normalized_;
  std::vector<std::string> id_token_;  // token string of each id ("" with id_valid_ false for gaps)
  std::vector<bool> id_valid_;
  std::int32_t bos_ = -1, eos_ = -1;
  PieceCache cache_;
};

// The JSON in `p`, or nullopt when there is no such file.
std::optional<nlohmann::json> read_json(const fs::path& p) {
  std::error_code ec;
  if (!fs::exists(p, ec)) return std::nullopt;
  const std::string bytes = read_file(p);
  try {
    return nlohmann::json::parse(bytes);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(p.string() + ": invalid JSON: " + e.what());
  }
}

HfTokenizer::HfTokenizer(const fs::path& dir) : dir_(fs::absolute(dir).lexically_normal()) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw InputError(dir.string() + ": not a folder (expected a Hugging Face tokenizer folder with tokenizer.json)");
  const fs::path tok_path = dir / "tokenizer.json", cfg_path = dir / "tokenizer_config.json",
                 gen_path = dir / "generation_config.json";
  tok_name_ = tok_path.string();
  cfg_name_ = cfg_path.string();
  gen_name_ = gen_path.string();
  const std::string tok_bytes = read_file(tok_path);
  const bool has_cfg = fs::exists(cfg_path, ec);
  const std::string cfg_bytes = has_cfg ? read_file(cfg_path) : std::string();
  {
    XXH3_state_t* st = XXH3_createState();
    if (!st) throw std::bad_alloc();
    XXH3_128bits_reset(st);
    const std::uint64_t n1 = tok_bytes.size();
    const std::uint64_t n2 = has_cfg ? cfg_bytes.size() : std::numeric_limits<std::uint64_t>::max();
    XXH3_128bits_update(st, &n1, sizeof n1);
    XXH3_128bits_update(st, tok_bytes.data(), tok_bytes.size());
    XXH3_128bits_update(st, &n2, sizeof n2);
    XXH3_128bits_update(st, cfg_bytes.data(), cfg_bytes.size());
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
    XXH3_freeState(st);
    hash_ = to_hex(c.digest, 8);
  }
  nlohmann::json tj;
  try {
    tj = nlohmann::json::parse(tok_bytes);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(tok_name_ + ": invalid JSON: " + e.what());
  }
  const JsonAt root(tj, tok_name_);
  root.object();
  load_model(root.at("model"));
  if (auto a = root.find("added_tokens")) load_added(*a);

  static const nlohmann::json null_json;
  auto part = [&](const char* key) {
    auto v = root.find(key);
    return v ? *v : JsonAt(null_json, tok_name_, key);
  };
  normalizer_ = hf::parse_normalizer(part("normalizer"));
  pre_ = hf::parse_pre_tokenizer(part("pre_tokenizer"));
  decoder_ = hf::parse_decoder(part("decoder"));

  for (const AddedToken& t : added_) {
    if (!t.normalized) {
      raw_.add(t.content, &t);
    } else {
      std::string p = t.content;
      if (normalizer_) normalizer_->apply(p, hf::growth_limit(p.size()));
      id_token_[static_cast<std::size_t>(t.id)] = p;  // tokenizers decodes it as its normalized form too
      normalized_.add(std::move(p), &t);
    }
  }
  raw_.finish();
  normalized_.finish();

  bos_ = post_processor_bos(part("post_processor"));
  if (bos_ >= 0 && (bos_ >= vocab_size() || !id_valid_[static_cast<std::size_t>(bos_)]))
    root.at("post_processor").fail("the BOS id " + std::to_string(bos_) + " is not a token");

  // tokenizer_config.json: add_bos_token / bos_token / eos_token
  std::optional<nlohmann::json> cfg;
  if (has_cfg) {
    try {
      cfg = nlohmann::json::parse(cfg_bytes);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(cfg_name_ + ": invalid JSON: " + e.what());
    }
  }
  std::optional<JsonAt> cfg_root;
  if (cfg) {
    cfg_root.emplace(*cfg, cfg_name_);
    cfg_root->object();
  }
  auto config_token = [&](const char* key) -> std::optional<std::pair<std::string, JsonAt>> {
    if (!cfg_root) return std::nullopt;
    auto v = cfg_root->find(key);
    if (!v) return std::nullopt;
    if (v->raw().is_string()) return std::make_pair(v->str(), *v);
    if (v->raw().is_object()) {
      const JsonAt c = v->at("content");
      return std::make_pair(c.str(), c);
    }
    v->fail("expected a token string or {\"content\": token}");
  };
  if (cfg_root) {
    if (auto add = cfg_root->find("add_bos_token")) {
      if (!add->boolean()) {
        bos_ = -1;
      } else {
        auto b = config_token("bos_token");
        if (!b) add->fail("is true, but bos_token is missing or null");
        bos_ = token_id(b->first, b->second, "bos_token");
      }
    }
  }
  if (auto e = config_token("eos_token")) {
    eos_ = token_id(e->first, e->second, "eos_token");
  } else if (const auto gen = read_json(gen_path)) {
    const JsonAt g(*gen, gen_name_);
    g.object();
    if (auto e2 = g.find("eos_token_id")) {
      if (e2->raw().is_array()) {
        if (e2->raw().empty()) e2->fail("expected an id or a non-empty list of ids");
        eos_ = static_cast<std::int32_t>(e2->at(0).integer(0, kMaxId));
      } else {
        eos_ = static_cast<std::int32_t>(e2->integer(0, kMaxId));
      }
      if (eos_ >= vocab_size() || !id_valid_[static_cast<std::size_t>(eos_)])
        e2->fail("id " + std::to_string(eos_) + " is not a token of " + tok_name_);
    }
  }
}

void HfTokenizer::load_model(const JsonAt& model) {
  model.object();
  std::string type;
  if (auto t = model.find("type")) {
    type = t->str();
  } else if (model.find("merges")) {
    type = "BPE";
  } else {
    model.at("type");  // fails: missing
  }
  if (type != "BPE")
    model.at("type").fail("model \"" + type + "\" is not supported (only BPE; WordPiece, Unigram and WordLevel are not)");
  if (auto d = model.find("dropout"))
    if (d->number() != 0.0) d->fail("BPE dropout is random; expected null or 0");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (auto p = model.find(key))
      if (!p->str().empty()) p->fail("is not supported (expected null or \"\")");
  byte_fallback_ = model.opt_bool("byte_fallback", false);
  fuse_unk_ = model.opt_bool("fuse_unk", false);
  ignore_merges_ = model.opt_bool("ignore_merges", false);

  const JsonAt vocab = model.at("vocab");
  const auto& vj = vocab.object();
  vocab_.reserve(vj.size());
  for (auto it = vj.begin(); it != vj.end(); ++it) {
    const JsonAt v(it.value(), tok_name_, vocab.path() + "[" + jq(it.key()) + "]");
    const auto id = static_cast<std::int32_t>(v.integer(0, kMaxId));
    if (static_cast<std::size_t>(id) >= id_token_.size()) {
      id_token_.resize(static_cast<std::size_t>(id) + 1);
      id_valid_.resize(static_cast<std::size_t>(id) + 1, false);
    }
    if (id_valid_[static_cast<std::size_t>(id)])
      v.fail("id " + std::to_string(id) + " is also given to " + jq(id_token_[static_cast<std::size_t>(id)]));
    id_valid_[static_cast<std::size_t>(id)] = true;
    id_token_[static_cast<std::size_t>(id)] = it.key();
    vocab_.emplace(it.key(), id);
  }
  ascii_id_.fill(-1);
  byte_token_.fill(-1);
  for (int c = 0; c < 128; ++c) {
    auto f = vocab_.find(std::string_view(std::string(1, static_cast<char>(c))));
    if (f != vocab_.end()) ascii_id_[static_cast<std::size_t>(c)] = f->second;
  }
  for (int b = 0; b < 256; ++b) {
    static const char* digits = "0123456789ABCDEF";
    const std::string name = std::string("<0x") + digits[b >> 4] + digits[b & 15] + ">";
    auto f = vocab_.find(name);
    if (f != vocab_.end()) byte_token_[static_cast<std::size_t>(b)] = f->second;
  }
  if (auto u = model.find("unk_token")) {
    const std::string name = u->str();
    auto f = vocab_.find(name);
    if (f == vocab_.end()) u->fail(jq(name) + " is not in model.vocab");
    unk_ = f->second;
  }

  const JsonAt merges = model.at("merges");
  const auto& mj = merges.array();
  merges_.reserve(mj.size());
  for (std::size_t i = 0; i < mj.size(); ++i) {
    const JsonAt m = merges.at(i);
    std::string a, b;
    if (m.raw().is_string()) {
      const std::string s = m.str();
      const std::size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        m.fail("expected \"left right\" (two tokens and one space), got " + jq(s));
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.raw().is_array()) {
      if (m.raw().size() != 2) m.fail("expected a pair [left, right]");
      a = m.at(0).str();
      b = m.at(1).str();
    } else {
      m.fail("expected \"left right\" or [left, right]");
    }
    auto fa = vocab_.find(a), fb = vocab_.find(b), fab = vocab_.find(a + b);
    if (fa == vocab_.end()) m.fail("token " + jq(a) + " is not in model.vocab");
    if (fb == vocab_.end()) m.fail("token " + jq(b) + " is not in model.vocab");
    if (fab == vocab_.end()) m.fail("the merged token " + jq(a + b) + " is not in model.vocab");
    const std::uint64_t key = (static_cast<std::uint64_t>(fa->second) << 32) | static_cast<std::uint32_t>(fb->second);
    merges_[key] = Merge{static_cast<std::int32_t>(i), fab->second};  // a repeated pair keeps its last rank
  }
}

void HfTokenizer::load_added(const JsonAt& list) {
  const auto& lj = list.array();
  added_.reserve(lj.size());
  for (std::size_t i = 0; i < lj.size(); ++i) {
    const JsonAt a = list.at(i);
    a.object();
    AddedToken t;
    t.id = static_cast<std::int32_t>(a.at("id").integer(0, kMaxId));
    t.content = a.at("content").str();
    if (t.content.empty()) a.at("content").fail("an added token cannot be empty");
    t.single_word = a.opt_bool("single_word", false);
    t.lstrip = a.opt_bool("lstrip", false);
    t.rstrip = a.opt_bool("rstrip", false);
    t.special = a.opt_bool("special", false);
    t.normalized = a.opt_bool("normalized", !t.special);
    auto in_vocab = vocab_.find(t.content);
    if (in_vocab != vocab_.end() && in_vocab->second != t.id)
      a.at("id").fail("is " + std::to_string(t.id) + ", but model.vocab gives " + jq(t.content) + " id " +
                      std::to_string(in_vocab->second));
    if (static_cast<std::size_t>(t.id) >= id_token_.size()) {
      id_token_.resize(static_cast<std::size_t>(t.id) + 1);
      id_valid_.resize(static_cast<std::size_t>(t.id) + 1, false);
    }
    if (id_valid_[static_cast<std::size_t>(t.id)] && id_token_[static_cast<std::size_t>(t.id)] != t.content)
      a.at("id").fail("id " + std::to_string(t.id) + " is also given to " +
                      jq(id_token_[static_cast<std::size_t>(t.id)]));
    if (added_ids_.count(t.content)) a.at("content").fail(jq(t.content) + " is listed twice");
    id_valid_[static_cast<std::size_t>(t.id)] = true;
    id_token_[static_cast<std::size_t>(t.id)] = t.content;
    added_ids_.emplace(t.content, t.id);
    added_.push_back(std::move(t));
  }
}

std::int32_t HfTokenizer::post_processor_bos(const JsonAt& j) const {
  if (j.is_null()) return -1;
  const std::string type = j.type();
  if (type == "TemplateProcessing") {
    const JsonAt single = j.at("single");
    if (single.array().empty()) return -1;
    const JsonAt first = single.at(0);
    first.object();
    if (auto st = first.find("SpecialToken")) {
      const std::string name = st->at("id").str();
      const JsonAt ids = j.at("special_tokens").at(name).at("ids");
      if (ids.array().size() != 1)
        ids.fail("a template starting with " + std::to_string(ids.array().size()) +
                 " ids is not supported (expected one BOS id)");
      return static_cast<std::int32_t>(ids.at(0).integer(0, kMaxId));
    }
    if (!first.find("Sequence")) first.fail("expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
    return -1;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    const JsonAt cls = j.at("cls");
    if (cls.array().size() != 2) cls.fail("expected [token, id]");
    cls.at(0).str();
    return static_cast<std::int32_t>(cls.at(1).integer(0, kMaxId));
  }
  if (type == "ByteLevel") return -1;
  if (type == "Sequence") {
    const JsonAt list = j.at("processors");
    std::int32_t bos = -1;
    for (std::size_t i = 0; i < list.array().size(); ++i) {
      const std::int32_t b = post_processor_bos(list.at(i));
      if (bos < 0) bos = b;
    }
    return bos;
  }
  j.at("type").fail("post-processor \"" + type +
                    "\" is not supported (supported: TemplateProcessing, ByteLevel, RobertaProcessing, "
                    "BertProcessing, Sequence)");
}

std::int32_t HfTokenizer::token_id(const std::string& name, const JsonAt& where, const std::string& what) const {
  auto a = added_ids_.find(name);
  if (a != added_ids_.end()) return a->second;
  auto v = vocab_.find(name);
  if (v != vocab_.end()) return v->second;
  where.fail(what + " " + jq(name) + " is neither an added token nor in model.vocab of " + tok_name_);
}

void HfTokenizer::merge_word(std::string_view w, std::vector<std::int32_t>& out) const {
  std::vector<std::int32_t> id;
  id.reserve(w.size());
  bool unk_pending = false;
  for (std::size_t i = 0; i < w.size();) {
    std::size_t len;
    const char32_t c = hf::utf8_at(w, i, &len);
    std::int32_t t = -1;
    if (c < 0x80) {
      t = ascii_id_[c];
    } else {
      auto f = vocab_.find(w.substr(i, len));
      if (f != vocab_.end()) t = f->second;
    }
    if (t >= 0) {
      if (unk_pending) id.push_back(unk_);
      unk_pending = false;
      id.push_back(t);
    } else {
      bool fell_back = false;
      if (byte_fallback_) {
        fell_back = true;
        for (std::size_t k = i; k < i + len; ++k)
          if (byte_token_[static_cast<unsigned char>(w[k])] < 0) fell_back = false;
        if (fell_back)  // (a pending unk stays pending, after these bytes, as in tokenizers)
          for (std::size_t k = i; k < i + len; ++k) id.push_back(byte_token_[static_cast<unsigned char>(w[k])]);
      }
      if (!fell_back && unk_ >= 0) {
        if (unk_pending && !fuse_unk_) id.push_back(unk_);
        unk_pending = true;
      }
    }
    i += len;
  }
  if (unk_pending) id.push_back(unk_);
  bpe_merge(id, [&](std::int32_t l, std::int32_t r) -> std::optional<BpeMerge> {
    auto f = merges_.find((static_cast<std::uint64_t>(static_cast<std::uint32_t>(l)) << 32) |
                          static_cast<std::uint32_t>(r));
    if (f == merges_.end()) return std::nullopt;
    return BpeMerge{static_cast<double>(f->second.rank), f->second.id};
  });
  out.insert(out.end(), id.begin(), id.end());
}

void HfTokenizer::encode_piece(std::string_view piece, std::vector<std::int32_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    auto f = vocab_.find(piece);
    if (f != vocab_.end()) {
      out.push_back(f->second);
      return;
    }
  }
  cache_.encode(piece, out, [&](std::string_view p, std::vector<std::int32_t>& o) { merge_word(p, o); });
}

std::vector<std::int32_t> HfTokenizer::encode(std::string_view text) const {
  const std::string s = hf::sanitize_utf8(text);
  std::vector<std::int32_t> out;
  out.reserve(s.size() / 3 + 8);
  std::vector<AddedMatcher::Seg> segs, subs;
  raw_.split(s, segs);
  std::vector<hf::Piece> pieces;
  for (const auto& seg : segs) {
    if (seg.id >= 0) {
      out.push_back(seg.id);
      continue;
    }
    std::string t = s.substr(seg.b, seg.e - seg.b);
    if (normalizer_) normalizer_->apply(t, hf::growth_limit(t.size()));
    subs.clear();
    normalized_.split(t, subs);
    for (const auto& sub : subs) {
      if (sub.id >= 0) {
        out.push_back(sub.id);
        continue;
      }
      pieces.clear();
      pieces.push_back(hf::Piece{t.substr(sub.b, sub.e - sub.b), seg.b == 0 && sub.b == 0});
      if (pre_) pre_->apply(pieces);
      for (const auto& p : pieces) encode_piece(p.text, out);
    }
  }
  return out;
}

std::string HfTokenizer::decode(std::span<const std::int32_t> ids) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::int32_t id = ids[i];
    if (id < 0 || id >= vocab_size() || !id_valid_[static_cast<std::size_t>(id)])
      throw InputError("hf tokenizer " + dir_.string() + ": token id " + std::to_string(id) + " at position " +
                       std::to_string(i) + " is not in the vocabulary (ids 0.." + std::to_string(vocab_size() - 1) +
                       ")");
    tokens.push_back(id_token_[static_cast<std::size_t>(id)]);
  }
  std::string out;
  if (!decoder_) {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (i) out.push_back(' ');
      out += tokens[i];
    }
    return out;
  }
  std::size_t bytes = 0;
  for (const auto& t : tokens) bytes += t.size();
  decoder_->apply(tokens, hf::growth_limit(bytes));
  for (const auto& t : tokens) out += t;
  return out;
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(const fs::path& dir) { return std::make_unique<HfTokenizer>(dir); }

const fs::path* hf_tokenizer_dir(const Tokenizer& tok) {
  const auto* h = dynamic_cast<const HfTokenizer*>(&tok);
  return h ? &h->dir() : nullptr;
}

}  // namespace stretch
