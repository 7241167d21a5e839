// tokenizer.json pre-tokenizers (io/tokenizer_hf_parts.hpp), as PyPI's tokenizers applies them to each piece:
//   Sequence                       each in order, over all pieces
//   Split {pattern, behavior, invert}  split at the matches of a {"String"} / {"Regex"} pattern; behavior Removed
//                                  (matches dropped), Isolated (each match a piece), MergedWithPrevious /
//                                  MergedWithNext (a match joins the piece before / after it), Contiguous
//                                  (adjacent matches form one piece); invert swaps matches and the text between
//   ByteLevel {add_prefix_space, use_regex}  a space prepended to a piece not starting with one (every piece, not
//                                  only the first), GPT-2's regex split (Isolated) when use_regex (default true),
//                                  then each byte written as its character of GPT-2's byte alphabet
//   Metaspace {replacement, prepend_scheme, split}  ' ' replaced by the replacement character; it is prepended to
//                                  a piece not starting with it (always; first: only the piece at the start of the
//                                  input; never), then the piece split before each replacement when split (default
//                                  true). The legacy add_prefix_space true / false means always / never.
//   Digits {individual_digits}     numeric characters (general category N) each alone, or runs of them together
// Others (Whitespace, WhitespaceSplit, BertPreTokenizer, Punctuation, CharDelimiterSplit, UnicodeScripts, ...)
// are refused by name.
#include <unicode/uchar.h>

#include "core/error.hpp"
#include "io/tokenizer_hf_parts.hpp"

namespace stretch::hf {
namespace {

const char* const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Replaces each piece by its sub-pieces at `spans` (empty ones dropped); the one at offset 0 keeps `first`.
void emit(const Piece& p, const std::vector<std::pair<std::size_t, std::size_t>>& spans, std::vector<Piece>& out) {
  for (const auto& [b, e] : spans)
    if (e > b) out.push_back(Piece{p.text.substr(b, e - b), p.first && b == 0});
}

class SequencePre final : public PreTokenizer {
 public:
  explicit SequencePre(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void apply(std::vector<Piece>& pieces) const override {
    for (const auto& p : parts_) p->apply(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

class SplitPre final : public PreTokenizer {
 public:
  SplitPre(Pattern p, SplitBehavior b, bool invert) : p_(std::move(p)), b_(b), invert_(invert) {}
  void apply(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size());
    std::vector<std::pair<std::size_t, std::size_t>> found;
    for (const Piece& p : pieces) {
      found.clear();
      p_.find_iter(p.text, found);
      emit(p, split_by(tile_matches(found, p.text.size(), invert_), b_), out);
    }
    pieces.swap(out);
  }

 private:
  Pattern p_;
  SplitBehavior b_;
  bool invert_;
};

class ByteLevelPre final : public PreTokenizer {
 public:
  ByteLevelPre(bool add_prefix_space, bool use_regex, const std::string& where)
      : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_.emplace(kGpt2Pattern, where);
  }
  void apply(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size());
    std::vector<std::pair<std::size_t, std::size_t>> found;
    for (Piece& p : pieces) {
      if (add_prefix_space_ && (p.text.empty() || p.text[0] != ' ')) p.text.insert(0, 1, ' ');
      const std::size_t start = out.size();
      if (regex_) {
        found.clear();
        regex_->find_iter(p.text, found);
        emit(p, split_by(tile_matches(found, p.text.size(), false), SplitBehavior::isolated), out);
      } else if (!p.text.empty()) {
        out.push_back(std::move(p));
      }
      for (std::size_t k = start; k < out.size(); ++k) {
        std::string mapped;
        mapped.reserve(out[k].text.size() * 2);
        for (char c : out[k].text) mapped += byte_char(static_cast<unsigned char>(c));
        out[k].text.swap(mapped);
      }
    }
    pieces.swap(out);
  }

 private:
  bool add_prefix_space_;
  std::optional<Regex> regex_;
};

enum class PrependScheme { always, first, never };

PrependScheme parse_prepend_scheme(const JsonAt& j) {
  if (auto s = j.find("prepend_scheme")) {
    const std::string v = s->str();
    if (v == "always") return PrependScheme::always;
    if (v == "first") return PrependScheme::first;
    if (v == "never") return PrependScheme::never;
    s->fail("unknown prepend_scheme \"" + v + "\" (expected always, first or never)");
  }
  return j.opt_bool("add_prefix_space", true) ? PrependScheme::always : PrependScheme::never;
}

std::string parse_replacement(const JsonAt& j) {
  const JsonAt r = j.at("replacement");
  const std::string s = r.str();
  std::size_t len = 0;
  if (s.empty() || (utf8_at(s, 0, &len), len != s.size())) r.fail("expected exactly one character");
  return s;
}

class MetaspacePre final : public PreTokenizer {
 public:
  MetaspacePre(std::string rep, PrependScheme scheme, bool split) : rep_(std::move(rep)), scheme_(scheme), split_(split) {}
  void apply(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size());
    std::vector<std::pair<std::size_t, std::size_t>> found;
    for (Piece& p : pieces) {
      std::string t;
      t.reserve(p.text.size() + rep_.size());
      for (char c : p.text) {
        if (c == ' ')
          t += rep_;
        else
          t.push_back(c);
      }
      const bool starts = t.compare(0, rep_.size(), rep_) == 0;
      if (!starts && (scheme_ == PrependScheme::always || (scheme_ == PrependScheme::first && p.first)))
        t.insert(0, rep_);
      p.text.swap(t);
      if (!split_) {
        if (!p.text.empty()) out.push_back(std::move(p));
        continue;
      }
      found.clear();
      for (std::size_t at = p.text.find(rep_); at != std::string::npos; at = p.text.find(rep_, at + rep_.size()))
        found.emplace_back(at, at + rep_.size());
      emit(p, split_by(tile_matches(found, p.text.size(), false), SplitBehavior::merged_with_next), out);
    }
    pieces.swap(out);
  }

 private:
  std::string rep_;
  PrependScheme scheme_;
  bool split_;
};

class DigitsPre final : public PreTokenizer {
 public:
  explicit DigitsPre(bool individual) : individual_(individual) {}
  void apply(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size());
    std::vector<std::pair<std::size_t, std::size_t>> found;
    for (const Piece& p : pieces) {
      found.clear();
      for (std::size_t i = 0; i < p.text.size();) {
        std::size_t len;
        const char32_t c = utf8_at(p.text, i, &len);
        const bool numeric = c < 0x80 ? (c >= '0' && c <= '9') : (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_N_MASK) != 0;
        if (numeric) found.emplace_back(i, i + len);
        i += len;
      }
      emit(p,
           split_by(tile_matches(found, p.text.size(), false),
                    individual_ ? SplitBehavior::isolated : SplitBehavior::contiguous),
           out);
    }
    pieces.swap(out);
  }

 private:
  bool individual_;
};

}  // namespace

std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const JsonAt& j) {
  if (j.is_null()) return nullptr;
  const std::string type = j.type();
  if (type == "Sequence") {
    return std::make_unique<SequencePre>(
        parse_sequence<PreTokenizer>(j, "pretokenizers", "a pre-tokenizer", parse_pre_tokenizer));
  }
  if (type == "Split")
    return std::make_unique<SplitPre>(Pattern(j.at("pattern")), parse_split_behavior(j.at("behavior")),
                                      j.opt_bool("invert", false));
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelPre>(j.opt_bool("add_prefix_space", true), j.opt_bool("use_regex", true),
                                          j.file() + ": " + j.path());
  if (type == "Metaspace")
    return std::make_unique<MetaspacePre>(parse_replacement(j), parse_prepend_scheme(j), j.opt_bool("split", true));
  if (type == "Digits") return std::make_unique<DigitsPre>(j.opt_bool("individual_digits", false));
  j.at("type").fail("pre-tokenizer \"" + type +
                    "\" is not supported (supported: Sequence, Split, ByteLevel, Metaspace, Digits)");
}

// ---- decoders ----
//   ByteLevel     each token whose characters are all in GPT-2's byte alphabet becomes those bytes (others stay
//                 as they are); the tokens are joined. The bytes are kept raw (tokenizers would turn invalid UTF-8
//                 into U+FFFD), so decoding a prefix of the ids gives a prefix of the text.
//   Metaspace     the replacement character becomes ' ', except in the first token, where it is dropped
//                 (unless prepend_scheme is never)
//   Replace {pattern, content}  in each token
//   ByteFallback  runs of "<0xXX>" tokens become their bytes (raw; tokenizers writes U+FFFD per byte when the
//                 run is not valid UTF-8)
//   Fuse          all tokens joined into one
//   Strip {content, start, stop}  up to `start` leading and `stop` trailing `content` characters removed from
//                 each token
//   Sequence      each in order
namespace {

class SequenceDec final : public Decoder {
 public:
  explicit SequenceDec(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  void apply(std::vector<std::string>& t, std::size_t limit) const override {
    for (const auto& p : parts_) p->apply(t, limit);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

class ByteLevelDec final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens, std::size_t) const override {
    std::string out;
    for (const std::string& t : tokens) {
      std::string bytes;
      bool all = valid_utf8(t);
      for (std::size_t i = 0; all && i < t.size();) {
        std::size_t len;
        const int b = alphabet_byte(utf8_at(t, i, &len));
        if (b < 0) all = false;
        bytes.push_back(static_cast<char>(b));
        i += len;
      }
      out += all ? bytes : t;
    }
    tokens.assign(1, std::move(out));
  }
};

class MetaspaceDec final : public Decoder {
 public:
  MetaspaceDec(std::string rep, bool strip_first) : rep_(std::move(rep)), strip_first_(strip_first) {}
  void apply(std::vector<std::string>& tokens, std::size_t) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      const std::string with = i == 0 && strip_first_ ? "" : " ";
      std::string out;
      out.reserve(t.size());
      for (std::size_t k = 0; k < t.size();) {
        if (t.compare(k, rep_.size(), rep_) == 0) {
          out += with;
          k += rep_.size();
        } else {
          out.push_back(t[k++]);
        }
      }
      t.swap(out);
    }
  }

 private:
  std::string rep_;
  bool strip_first_;
};

class ReplaceDec final : public Decoder {
 public:
  ReplaceDec(Pattern p, std::string content, std::string where)
      : p_(std::move(p)), content_(std::move(content)), where_(std::move(where)) {}
  void apply(std::vector<std::string>& tokens, std::size_t limit) const override {
    std::vector<std::pair<std::size_t, std::size_t>> m;
    std::size_t total = 0;
    for (const std::string& t : tokens) total += t.size();
    for (std::string& t : tokens) {
      if (!valid_utf8(t)) t = sanitize_utf8(t);
      m.clear();
      p_.find_iter(t, m);
      if (m.empty()) continue;
      std::size_t size = t.size();
      for (const auto& [b, e] : m) size = size - (e - b) + content_.size();
      total += size - std::min(size, t.size());
      check_growth(total, limit, where_);
      std::string out;
      std::size_t prev = 0;
      for (const auto& [b, e] : m) {
        out.append(t, prev, b - prev);
        out += content_;
        prev = e;
      }
      out.append(t, prev, std::string::npos);
      t.swap(out);
    }
  }

 private:
  Pattern p_;
  std::string content_, where_;
};

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class ByteFallbackDec final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens, std::size_t) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string run;
    bool in_run = false;
    for (std::string& t : tokens) {
      const bool is_byte = t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && hex_digit(t[3]) >= 0 &&
                           hex_digit(t[4]) >= 0;
      if (is_byte) {
        run.push_back(static_cast<char>(hex_digit(t[3]) * 16 + hex_digit(t[4])));
        in_run = true;
        continue;
      }
      if (in_run) {
        out.push_back(std::move(run));
        run.clear();
        in_run = false;
      }
      out.push_back(std::move(t));
    }
    if (in_run) out.push_back(std::move(run));
    tokens.swap(out);
  }
};

class FuseDec final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens, std::size_t) const override {
    std::string out;
    for (const auto& t : tokens) out += t;
    tokens.assign(1, std::move(out));
  }
};

class StripDec final : public Decoder {
 public:
  StripDec(std::string content, std::size_t start, std::size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void apply(std::vector<std::string>& tokens, std::size_t) const override {
    const std::size_t c = content_.size();
    for (std::string& t : tokens) {
      std::size_t b = 0, e = t.size();
      for (std::size_t k = 0; k < start_ && e - b >= c && t.compare(b, c, content_) == 0; ++k) b += c;
      for (std::size_t k = 0; k < stop_ && e - b >= c && t.compare(e - c, c, content_) == 0; ++k) e -= c;
      t = t.substr(b, e - b);
    }
  }

 private:
  std::string content_;
  std::size_t start_, stop_;
};

}  // namespace

std::unique_ptr<Decoder> parse_decoder(const JsonAt& j) {
  if (j.is_null()) return nullptr;
  const std::string type = j.type();
  if (type == "Sequence") {
    return std::make_unique<SequenceDec>(
        parse_sequence<Decoder>(j, "decoders", "a decoder", parse_decoder));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDec>();
  if (type == "Metaspace")
    return std::make_unique<MetaspaceDec>(parse_replacement(j), parse_prepend_scheme(j) != PrependScheme::never);
  if (type == "Replace")
    return std::make_unique<ReplaceDec>(Pattern(j.at("pattern")), j.at("content").str(), j.file() + ": " + j.path());
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDec>();
  if (type == "Fuse") return std::make_unique<FuseDec>();
  if (type == "Strip") {
    const JsonAt content = j.at("content");
    const std::string c = content.str();
    std::size_t len = 0;
    if (c.empty() || (utf8_at(c, 0, &len), len != c.size())) content.fail("expected exactly one character");
    return std::make_unique<StripDec>(c, static_cast<std::size_t>(j.at("start").integer(0, 1 << 20)),
                                      static_cast<std::size_t>(j.at("stop").integer(0, 1 << 20)));
  }
  j.at("type").fail("decoder \"" + type +
                    "\" is not supported (supported: Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse, "
                    "Strip)");
}

}  // namespace stretch::hf
