// Internal to the Hugging Face tokenizer (io/tokenizer_hf.hpp): the pipeline stages of a tokenizer.json, parsed
// from JSON into small objects, and the helpers they share. Not part of the io layer's interface.
//
// Text inside the pipeline is always valid UTF-8 (load_hf_tokenizer's encode() replaces invalid input bytes by
// U+FFFD first; normalizers, pre-tokenizers and JSON strings keep it valid), so the regexes run with
// PCRE2_NO_UTF_CHECK. Decoders work on byte strings that ByteFallback / ByteLevel may leave invalid.
//
// Regexes (Split, Replace) are written for Oniguruma (Ruby syntax), which PyPI's tokenizers uses; Regex
// translates the constructs whose meaning differs in PCRE2 (compiled with UTF + UCP, so \p{L}, \p{N} are Unicode):
//   \s, \S   Oniguruma: U+0009..U+000D, U+0085 and general category Z (= Unicode White_Space); PCRE2 also counts
//            U+180E. Written as [\t-\r\x{85}\p{Z}] (inside a class: its members; \S inside a class stays PCRE2's).
//   \w, \W   Oniguruma: letters, marks, numbers, connector punctuation; PCRE2: \p{L}, \p{N}, '_'.
//            Written as [\p{L}\p{M}\p{N}\p{Pc}].
//   \h, \H   Oniguruma: a hexadecimal digit; PCRE2: horizontal space. Written as [0-9a-fA-F].
//   \uHHHH   Ruby's code point escape: written as \x{HHHH}.
//   ^ $      Ruby anchors match at every line (PCRE2_MULTILINE); '.' matches anything but \n (newline = LF).
// Matches are found as the onig crate's find_iter does: each search starts where the last match ended; an empty
// match right at the end of the previous match is skipped by moving the search start one character on.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "io/bpe_cache.hpp"
#include "io/tokenizer.hpp"

namespace stretch::hf {

// ---- JSON access with the file and key path in every error: "<file>: <path>: <what>" (InputError) ----
class JsonAt {
 public:
  JsonAt(const nlohmann::json& j, const std::string& file, std::string path = "")
      : j_(&j), file_(&file), path_(std::move(path)) {}
  [[noreturn]] void fail(const std::string& what) const;
  const nlohmann::json& raw() const { return *j_; }
  const std::string& path() const { return path_; }
  const std::string& file() const { return *file_; }
  bool is_null() const { return j_->is_null(); }
  // A required member of an object (fails when this is not an object or the key is missing).
  JsonAt at(const std::string& key) const;
  // An optional member: nullopt when missing or null.
  std::optional<JsonAt> find(const std::string& key) const;
  JsonAt at(std::size_t i) const;  // an array element (the caller checked the size)
  std::string str() const;
  bool boolean() const;
  std::int64_t integer(std::int64_t lo, std::int64_t hi) const;
  double number() const;
  const nlohmann::json& array() const;   // fails unless an array
  const nlohmann::json& object() const;  // fails unless an object
  // Optional members with defaults (null counts as missing).
  bool opt_bool(const std::string& key, bool dflt) const;
  std::string opt_str(const std::string& key, const std::string& dflt) const;
  std::string type() const;  // the required "type" string of a component

 private:
  const nlohmann::json* j_;
  const std::string* file_;
  std::string path_;
};

// The components of a "Sequence" (its list under `key`: "normalizers", "pretokenizers", "decoders"), each parsed by
// parse(item); a null item is refused naming `what` ("a normalizer", ...).
template <class T, class Parse>
std::vector<std::unique_ptr<T>> parse_sequence(const JsonAt& j, const char* key, const char* what, Parse parse) {
  const JsonAt list = j.at(key);
  std::vector<std::unique_ptr<T>> parts;
  for (std::size_t i = 0; i < list.array().size(); ++i) {
    const JsonAt item = list.at(i);
    if (item.is_null()) item.fail(std::string("expected ") + what + ", got null");
    parts.push_back(parse(item));
  }
  return parts;
}

// ---- UTF-8 ----
using stretch::append_utf8;  // io/bpe_cache.hpp
// Decodes the code point at s[pos] of VALID UTF-8 text; sets *len.
char32_t utf8_at(std::string_view s, std::size_t pos, std::size_t* len);
using stretch::sanitize_utf8;  // io/tokenizer.hpp
using stretch::valid_utf8;
// GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 to U+0100 + n in order.
const char32_t* byte_alphabet();
// byte -> its character in the byte alphabet, as UTF-8
const std::string& byte_char(unsigned char b);
// The byte of a byte-alphabet character, or -1.
int alphabet_byte(char32_t c);

// ---- regexes and patterns ----
class Regex {
 public:
  // `where` ("<file>: <path>") names the pattern in errors. InputError for a pattern PCRE2 cannot compile.
  Regex(std::string_view oniguruma_pattern, const std::string& where, bool literal = false);
  // The non-overlapping matches in valid UTF-8 `text`, in order (see the header comment for empty matches).
  void find_iter(std::string_view text, std::vector<std::pair<std::size_t, std::size_t>>& out) const;

 private:
  struct Code;
  std::shared_ptr<const Code> code_;
  std::string where_;
};
std::string translate_oniguruma(std::string_view pattern);

// tokenizers' pattern: {"String": s} (literal) or {"Regex": r}.
class Pattern {
 public:
  explicit Pattern(const JsonAt& j);
  // The matches of the pattern in `text`, as find_iter gives them.
  void find_iter(std::string_view text, std::vector<std::pair<std::size_t, std::size_t>>& out) const;

 private:
  std::string literal_;          // non-empty literal: plain substring search
  std::optional<Regex> regex_;   // otherwise
};

enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };
SplitBehavior parse_split_behavior(const JsonAt& j);
// tokenizers' NormalizedString::split: `matches` tile the text as (begin, end, is_match); returns the kept
// pieces' (begin, end), possibly empty ones included.
std::vector<std::pair<std::size_t, std::size_t>> split_by(
    const std::vector<std::tuple<std::size_t, std::size_t, bool>>& matches, SplitBehavior b);
// The match list of a regex / literal search tiling `n` bytes: gaps as non-matches; [(0, 0, false)] for n == 0.
std::vector<std::tuple<std::size_t, std::size_t, bool>> tile_matches(
    const std::vector<std::pair<std::size_t, std::size_t>>& found, std::size_t n, bool invert);

// ---- pipeline stages ----
// Normalizers and decoders take a `limit` on the bytes their output may reach (a Sequence of Replace steps could
// otherwise grow the text exponentially): InputError naming the step when it would be passed.
std::size_t growth_limit(std::size_t input_bytes);  // 64 * input + 4096
void check_growth(std::size_t bytes, std::size_t limit, const std::string& where);

struct Normalizer {
  virtual ~Normalizer() = default;
  virtual void apply(std::string& s, std::size_t limit) const = 0;
};
// null -> nullptr. InputError naming the key path for an unknown or malformed normalizer.
std::unique_ptr<Normalizer> parse_normalizer(const JsonAt& j);

// A piece of text on its way to the model. `first`: it starts at the beginning of the input (for Metaspace's
// prepend_scheme "first", which tokenizers decides by the piece's original offset being 0).
struct Piece {
  std::string text;
  bool first = false;
};
struct PreTokenizer {
  virtual ~PreTokenizer() = default;
  // Replaces each piece by its sub-pieces (empty ones dropped).
  virtual void apply(std::vector<Piece>& pieces) const = 0;
};
std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const JsonAt& j);

// Decoders map a list of token strings to a list of strings (tokenizers' decode_chain); the result is joined.
struct Decoder {
  virtual ~Decoder() = default;
  virtual void apply(std::vector<std::string>& tokens, std::size_t limit) const = 0;
};
std::unique_ptr<Decoder> parse_decoder(const JsonAt& j);

}  // namespace stretch::hf
