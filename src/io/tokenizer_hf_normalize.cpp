// tokenizer.json normalizers (io/tokenizer_hf_parts.hpp), as PyPI's tokenizers applies them:
//   Sequence                  each in order
//   NFC, NFD, NFKC, NFKD      Unicode normalization (ICU's Normalizer2; ASCII text is left as is)
//   Lowercase                 each code point's full lowercase mapping without context (Rust's char::to_lowercase:
//                             'Σ' is always 'σ', 'İ' becomes "i̇"), through ICU's root-locale u_strToLower one code
//                             point at a time
//   Prepend {prepend}         prepended to non-empty text
//   Replace {pattern, content}  every match of a {"String"} or {"Regex"} pattern replaced by content
// Others (Precompiled, BertNormalizer, Strip, StripAccents, NMT, ByteLevel, ...) are refused by name.
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>
#include <unicode/ustring.h>

#include <new>

#include "core/error.hpp"
#include "io/tokenizer_hf_parts.hpp"

namespace stretch::hf {
namespace {

bool is_ascii(const std::string& s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void apply(std::string& s, std::size_t limit) const override {
    for (const auto& p : parts_) p->apply(s, limit);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

class UnicodeNormalizer final : public Normalizer {
 public:
  UnicodeNormalizer(const icu::Normalizer2* n, const std::string& name, std::string where)
      : n_(n), name_(name), where_(std::move(where)) {}
  void apply(std::string& s, std::size_t limit) const override {
    if (is_ascii(s)) return;
    UErrorCode err = U_ZERO_ERROR;
    const icu::UnicodeString in = icu::UnicodeString::fromUTF8(s);
    const icu::UnicodeString out = n_->normalize(in, err);
    if (U_FAILURE(err)) {
      if (err == U_MEMORY_ALLOCATION_ERROR) throw std::bad_alloc();
      throw InputError(where_ + ": " + name_ + " normalization failed: " + u_errorName(err));
    }
    s.clear();
    out.toUTF8String(s);
    check_growth(s.size(), limit, where_);
  }

 private:
  const icu::Normalizer2* n_;
  std::string name_, where_;
};

class LowercaseNormalizer final : public Normalizer {
 public:
  explicit LowercaseNormalizer(std::string where) : where_(std::move(where)) {}
  void apply(std::string& s, std::size_t limit) const override {
    if (is_ascii(s)) {
      for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      return;
    }
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
      std::size_t len;
      const char32_t c = utf8_at(s, i, &len);
      i += len;
      if (c < 0x80) {
        out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : static_cast<char>(c));
        continue;
      }
      UChar src[2], dst[8];
      std::int32_t n = 0;
      U16_APPEND_UNSAFE(src, n, static_cast<UChar32>(c));
      UErrorCode err = U_ZERO_ERROR;
      const std::int32_t m = u_strToLower(dst, 8, src, n, "", &err);
      if (U_FAILURE(err) || m > 8) {  // no full lowercase mapping is that long; keep the character
        append_utf8(out, c);
        continue;
      }
      for (std::int32_t k = 0; k < m;) {
        UChar32 d;
        U16_NEXT(dst, k, m, d);
        append_utf8(out, static_cast<char32_t>(d));
      }
    }
    check_growth(out.size(), limit, where_);
    s.swap(out);
  }

 private:
  std::string where_;
};

class PrependNormalizer final : public Normalizer {
 public:
  PrependNormalizer(std::string p, std::string where) : p_(std::move(p)), where_(std::move(where)) {}
  void apply(std::string& s, std::size_t limit) const override {
    if (s.empty()) return;
    check_growth(s.size() + p_.size(), limit, where_);
    s.insert(0, p_);
  }

 private:
  std::string p_, where_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(Pattern p, std::string content, std::string where)
      : p_(std::move(p)), content_(std::move(content)), where_(std::move(where)) {}
  void apply(std::string& s, std::size_t limit) const override {
    std::vector<std::pair<std::size_t, std::size_t>> m;
    p_.find_iter(s, m);
    if (m.empty()) return;
    std::size_t size = s.size();
    for (const auto& [b, e] : m) size = size - (e - b) + content_.size();
    check_growth(size, limit, where_);
    std::string out;
    out.reserve(s.size() + m.size() * content_.size());
    std::size_t prev = 0;
    for (const auto& [b, e] : m) {
      out.append(s, prev, b - prev);
      out += content_;
      prev = e;
    }
    out.append(s, prev, std::string::npos);
    s.swap(out);
  }

 private:
  Pattern p_;
  std::string content_, where_;
};

const icu::Normalizer2* icu_normalizer(const std::string& type, const JsonAt& j) {
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* n = type == "NFC"    ? icu::Normalizer2::getNFCInstance(err)
                              : type == "NFD"  ? icu::Normalizer2::getNFDInstance(err)
                              : type == "NFKC" ? icu::Normalizer2::getNFKCInstance(err)
                                               : icu::Normalizer2::getNFKDInstance(err);
  if (U_FAILURE(err) || !n) j.fail("ICU has no " + type + " normalizer: " + u_errorName(err));
  return n;
}

}  // namespace

std::unique_ptr<Normalizer> parse_normalizer(const JsonAt& j) {
  if (j.is_null()) return nullptr;
  const std::string type = j.type();
  const std::string where = j.file() + ": " + j.path();
  if (type == "Sequence") {
    return std::make_unique<SequenceNormalizer>(
        parse_sequence<Normalizer>(j, "normalizers", "a normalizer", parse_normalizer));
  }
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD")
    return std::make_unique<UnicodeNormalizer>(icu_normalizer(type, j), type, where);
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>(where);
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(j.at("prepend").str(), where);
  if (type == "Replace")
    return std::make_unique<ReplaceNormalizer>(Pattern(j.at("pattern")), j.at("content").str(), where);
  j.at("type").fail("normalizer \"" + type +
                    "\" is not supported (supported: Sequence, NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace)");
}

}  // namespace stretch::hf
