// Shared pieces of the Hugging Face tokenizer (io/tokenizer_hf_parts.hpp): JSON access with key paths, UTF-8,
// GPT-2's byte alphabet, Oniguruma-compatible regexes over PCRE2, and tokenizers' split behaviors.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <array>
#include <new>

#include "core/error.hpp"
#include "core/json_int.hpp"
#include "io/tokenizer_hf_parts.hpp"

namespace stretch::hf {

// ---- JsonAt ----
namespace {
std::string shown(const nlohmann::json& j) {
  std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}
}  // namespace

void JsonAt::fail(const std::string& what) const {
  throw InputError(*file_ + ": " + (path_.empty() ? std::string("(top level)") : path_) + ": " + what);
}

JsonAt JsonAt::at(const std::string& key) const {
  object();
  auto it = j_->find(key);
  const std::string p = path_.empty() ? key : path_ + "." + key;
  if (it == j_->end()) JsonAt(*j_, *file_, p).fail("missing");
  return JsonAt(*it, *file_, p);
}

std::optional<JsonAt> JsonAt::find(const std::string& key) const {
  object();
  auto it = j_->find(key);
  if (it == j_->end() || it->is_null()) return std::nullopt;
  return JsonAt(*it, *file_, path_.empty() ? key : path_ + "." + key);
}

JsonAt JsonAt::at(std::size_t i) const { return JsonAt((*j_)[i], *file_, path_ + "[" + std::to_string(i) + "]"); }

std::string JsonAt::str() const {
  if (!j_->is_string()) fail("expected a string, got " + shown(*j_));
  return j_->get<std::string>();
}

bool JsonAt::boolean() const {
  if (!j_->is_boolean()) fail("expected true or false, got " + shown(*j_));
  return j_->get<bool>();
}

std::int64_t JsonAt::integer(std::int64_t lo, std::int64_t hi) const {
  const auto v = json_int64(*j_);  // 64 bits, never wrapped
  if (!v || *v < lo || *v > hi)
    fail("expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + shown(*j_));
  return *v;
}

double JsonAt::number() const {
  if (!j_->is_number()) fail("expected a number, got " + shown(*j_));
  return j_->get<double>();
}

const nlohmann::json& JsonAt::array() const {
  if (!j_->is_array()) fail("expected an array, got " + shown(*j_));
  return *j_;
}

const nlohmann::json& JsonAt::object() const {
  if (!j_->is_object()) fail("expected an object, got " + shown(*j_));
  return *j_;
}

bool JsonAt::opt_bool(const std::string& key, bool dflt) const {
  auto v = find(key);
  return v ? v->boolean() : dflt;
}

std::string JsonAt::opt_str(const std::string& key, const std::string& dflt) const {
  auto v = find(key);
  return v ? v->str() : dflt;
}

std::string JsonAt::type() const { return at("type").str(); }

std::size_t growth_limit(std::size_t input_bytes) { return 64 * input_bytes + 4096; }

void check_growth(std::size_t bytes, std::size_t limit, const std::string& where) {
  if (bytes > limit)
    throw InputError(where + ": the text would grow to " + std::to_string(bytes) + " bytes, past the limit of " +
                     std::to_string(limit) + " (64 times the input, plus 4096)");
}

// ---- UTF-8 ----

char32_t utf8_at(std::string_view s, std::size_t pos, std::size_t* len) {
  const auto b = static_cast<unsigned char>(s[pos]);
  auto cont = [&](std::size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[pos + k]) & 0x3F); };
  if (b < 0x80) {
    *len = 1;
    return b;
  }
  if (b < 0xE0) {
    *len = 2;
    return (static_cast<char32_t>(b & 0x1F) << 6) | cont(1);
  }
  if (b < 0xF0) {
    *len = 3;
    return (static_cast<char32_t>(b & 0x0F) << 12) | (cont(1) << 6) | cont(2);
  }
  *len = 4;
  return (static_cast<char32_t>(b & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3);
}

namespace {
// Length of the well-formed sequence at p (0 when ill-formed) and, for ill-formed ones, the bytes to replace.
std::size_t well_formed(const unsigned char* s, std::size_t pos, std::size_t n, std::size_t* consumed) {
  if (s[pos] < 0x80) {
    *consumed = 1;
    return 1;
  }
  std::int32_t i = 0;
  const auto length = static_cast<std::int32_t>(std::min<std::size_t>(n - pos, 4));
  UChar32 c;
  U8_NEXT(s + pos, i, length, c);
  *consumed = static_cast<std::size_t>(i);
  return c < 0 ? 0 : static_cast<std::size_t>(i);
}
}  // namespace

namespace {
struct Alphabet {
  std::array<char32_t, 256> chars{};
  std::array<std::string, 256> utf8;
  std::array<int, 324> byte_of{};  // characters 0..U+0143
  Alphabet() {
    std::array<bool, 256> printable{};
    for (int b = '!'; b <= '~'; ++b) printable[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
    byte_of.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      chars[b] = printable[b] ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      append_utf8(utf8[b], chars[b]);
      byte_of[chars[b]] = b;
    }
  }
};
const Alphabet& alphabet() {
  static const Alphabet a;
  return a;
}
}  // namespace

const char32_t* byte_alphabet() { return alphabet().chars.data(); }
const std::string& byte_char(unsigned char b) { return alphabet().utf8[b]; }
int alphabet_byte(char32_t c) { return c < 324 ? alphabet().byte_of[c] : -1; }

// ---- regexes ----
std::string translate_oniguruma(std::string_view p) {
  static const std::string space = "\\t-\\r\\x{85}\\p{Z}", word = "\\p{L}\\p{M}\\p{N}\\p{Pc}", hex = "0-9a-fA-F";
  std::string out;
  out.reserve(p.size() + 16);
  bool in_class = false;
  auto is_hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); };
  for (std::size_t i = 0; i < p.size();) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char d = p[i + 1];
      const char* keep = nullptr;
      std::string rep;
      switch (d) {
        case 's': rep = in_class ? space : "[" + space + "]"; break;
        case 'S': rep = in_class ? "\\S" : "[^" + space + "]"; break;
        case 'w': rep = in_class ? word : "[" + word + "]"; break;
        case 'W': rep = in_class ? "\\W" : "[^" + word + "]"; break;
        case 'h': rep = in_class ? hex : "[" + hex + "]"; break;
        case 'H': rep = in_class ? "\\H" : "[^" + hex + "]"; break;
        case 'u':
          if (i + 5 < p.size() && is_hex(p[i + 2]) && is_hex(p[i + 3]) && is_hex(p[i + 4]) && is_hex(p[i + 5])) {
            out += "\\x{" + std::string(p.substr(i + 2, 4)) + "}";
            i += 6;
            continue;
          }
          keep = "";
          break;
        case 'p':
        case 'P':
          if (i + 2 < p.size() && p[i + 2] == '{') {  // \p{...} as one unit
            const std::size_t close = p.find('}', i + 3);
            const std::size_t end = close == std::string_view::npos ? p.size() : close + 1;
            out.append(p.substr(i, end - i));
            i = end;
            continue;
          }
          keep = "";
          break;
        default: keep = ""; break;
      }
      if (keep) {
        out.append(p.substr(i, 2));
      } else {
        out += rep;
      }
      i += 2;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out.push_back(c);
      ++i;
      if (i < p.size() && p[i] == '^') out.push_back(p[i++]);
      if (i < p.size() && p[i] == ']') out.push_back(p[i++]);  // a leading ']' is literal
      continue;
    }
    if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX class [:alpha:]
      const std::size_t close = p.find(":]", i + 2);
      if (close != std::string_view::npos) {
        out.append(p.substr(i, close + 2 - i));
        i = close + 2;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out.push_back(c);
    ++i;
  }
  return out;
}

struct Regex::Code {
  pcre2_code* code = nullptr;
  ~Code() {
    if (code) pcre2_code_free(code);
  }
};

namespace {
std::string pcre2_message(int rc) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(rc, buf, sizeof buf) < 0) return "PCRE2 error " + std::to_string(rc);
  return reinterpret_cast<const char*>(buf);
}

// Per thread: a match context with a JIT stack of up to 8 MB, and match data for the whole match.
struct MatchEnv {
  pcre2_match_context* mctx = nullptr;
  pcre2_jit_stack* stack = nullptr;
  pcre2_match_data* md = nullptr;
  MatchEnv() {
    mctx = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    md = pcre2_match_data_create(1, nullptr);
    if (!mctx || !stack || !md) {
      release();
      throw std::bad_alloc();
    }
    pcre2_jit_stack_assign(mctx, nullptr, stack);
    pcre2_set_match_limit(mctx, 10'000'000);
  }
  void release() {
    if (md) pcre2_match_data_free(md);
    if (stack) pcre2_jit_stack_free(stack);
    if (mctx) pcre2_match_context_free(mctx);
    md = nullptr;
    stack = nullptr;
    mctx = nullptr;
  }
  ~MatchEnv() { release(); }
  MatchEnv(const MatchEnv&) = delete;
  MatchEnv& operator=(const MatchEnv&) = delete;
};
MatchEnv& match_env() {
  thread_local MatchEnv env;
  return env;
}
}  // namespace

Regex::Regex(std::string_view pattern, const std::string& where, bool literal) : where_(where) {
  const std::string translated = literal ? std::string(pattern) : translate_oniguruma(pattern);
  pcre2_compile_context* cc = pcre2_compile_context_create(nullptr);
  if (!cc) throw std::bad_alloc();
  pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
  int err = 0;
  PCRE2_SIZE off = 0;
  const std::uint32_t opts = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : PCRE2_MULTILINE);
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(), opts, &err, &off, cc);
  pcre2_compile_context_free(cc);
  if (!code)
    throw InputError(where + ": invalid regex " +
                     nlohmann::json(std::string(pattern)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                     ": " + pcre2_message(err) + " at offset " + std::to_string(off) +
                     (translated != pattern ? " of its PCRE2 form " + nlohmann::json(translated).dump() : ""));
  auto c = std::make_shared<Code>();
  c->code = code;
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // the interpreter is used when JIT is unavailable
  code_ = std::move(c);
}

void Regex::find_iter(std::string_view text, std::vector<std::pair<std::size_t, std::size_t>>& out) const {
  MatchEnv& env = match_env();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const std::size_t n = text.size();
  std::size_t pos = 0, last_end = 0;
  bool have_last = false;
  while (pos <= n) {
    const int rc = pcre2_match(code_->code, subject, n, pos, PCRE2_NO_UTF_CHECK, env.md, env.mctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0)
      throw InputError(where_ + ": the regex failed on a " + std::to_string(n) + "-byte text: " + pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(env.md);
    const std::size_t s = ov[0], e = ov[1];
    if (e < s || s < pos || e > n)
      throw InputError(where_ + ": the regex reported a match outside the text searched (\\K is not supported)");
    if (s == e && have_last && last_end == e) {  // an empty match right after the previous one: move on a char
      if (pos >= n) break;
      std::size_t len;
      utf8_at(text, pos, &len);
      pos += len;
      continue;
    }
    out.emplace_back(s, e);
    pos = e;
    last_end = e;
    have_last = true;
  }
}

Pattern::Pattern(const JsonAt& j) {
  j.object();
  auto s = j.find("String");
  auto r = j.find("Regex");
  if (s && r) j.fail("expected one of \"String\" or \"Regex\", not both");
  if (s) {
    literal_ = s->str();
    if (literal_.empty()) regex_.emplace("", s->file() + ": " + s->path(), true);
  } else if (r) {
    regex_.emplace(r->str(), r->file() + ": " + r->path());
  } else {
    j.fail("expected {\"String\": text} or {\"Regex\": pattern}");
  }
}

void Pattern::find_iter(std::string_view text, std::vector<std::pair<std::size_t, std::size_t>>& out) const {
  if (regex_) {
    regex_->find_iter(text, out);
    return;
  }
  for (std::size_t at = text.find(literal_); at != std::string_view::npos; at = text.find(literal_, at + literal_.size()))
    out.emplace_back(at, at + literal_.size());
}

SplitBehavior parse_split_behavior(const JsonAt& j) {
  const std::string b = j.str();
  if (b == "Removed") return SplitBehavior::removed;
  if (b == "Isolated") return SplitBehavior::isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (b == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (b == "Contiguous") return SplitBehavior::contiguous;
  j.fail("unknown split behavior \"" + b +
         "\" (expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous)");
}

std::vector<std::tuple<std::size_t, std::size_t, bool>> tile_matches(
    const std::vector<std::pair<std::size_t, std::size_t>>& found, std::size_t n, bool invert) {
  std::vector<std::tuple<std::size_t, std::size_t, bool>> out;
  if (n == 0) {
    out.emplace_back(0, 0, invert);
    return out;
  }
  out.reserve(2 * found.size() + 1);
  std::size_t prev = 0;
  for (const auto& [s, e] : found) {
    if (prev != s) out.emplace_back(prev, s, invert);
    out.emplace_back(s, e, !invert);
    prev = e;
  }
  if (prev != n) out.emplace_back(prev, n, invert);
  return out;
}

std::vector<std::pair<std::size_t, std::size_t>> split_by(
    const std::vector<std::tuple<std::size_t, std::size_t, bool>>& m, SplitBehavior b) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  out.reserve(m.size());
  switch (b) {
    case SplitBehavior::isolated:
      for (const auto& [s, e, is] : m) out.emplace_back(s, e);
      break;
    case SplitBehavior::removed:
      for (const auto& [s, e, is] : m)
        if (!is) out.emplace_back(s, e);
      break;
    case SplitBehavior::contiguous: {
      bool prev = false;
      for (const auto& [s, e, is] : m) {
        if (is == prev && !out.empty())
          out.back().second = e;
        else
          out.emplace_back(s, e);
        prev = is;
      }
      break;
    }
    case SplitBehavior::merged_with_previous: {
      bool prev = false;
      for (const auto& [s, e, is] : m) {
        if (is && !prev && !out.empty())
          out.back().second = e;
        else
          out.emplace_back(s, e);
        prev = is;
      }
      break;
    }
    case SplitBehavior::merged_with_next: {
      bool prev = false;
      for (auto it = m.rbegin(); it != m.rend(); ++it) {
        const auto& [s, e, is] = *it;
        if (is && !prev && !out.empty())
          out.back().first = s;
        else
          out.emplace_back(s, e);
        prev = is;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
  }
  return out;
}

}  // namespace stretch::hf

namespace stretch {

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (std::size_t i = 0; i < s.size();) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    std::size_t used;
    if (hf::well_formed(p, i, s.size(), &used) == 0) return false;
    i += used;
  }
  return true;
}

std::string sanitize_utf8(std::string_view s) {
  if (valid_utf8(s)) return std::string(s);
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  std::string out;
  out.reserve(s.size() + 16);
  for (std::size_t i = 0; i < s.size();) {
    std::size_t used;
    if (hf::well_formed(p, i, s.size(), &used) == 0)
      out += "\xEF\xBF\xBD";
    else
      out.append(s.data() + i, used);
    i += used;
  }
  return out;
}

}  // namespace stretch
