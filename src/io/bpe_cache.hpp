// The piece cache of the BPE tokenizers (GPT-2's, tokenizer.json's): the ids of each distinct pre-tokenized piece,
// merged once. Thread-safe (a mutex held only for a lookup or an insertion); pieces longer than kMaxLen are merged
// every time, and the cache starts over when it holds kMaxPieces. Also the UTF-8 encoder they share.
#pragma once
#include <xxhash.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace stretch {

// Appends code point c (<= 0x10FFFF) as UTF-8.
inline void append_utf8(std::string& s, char32_t c) {
  if (c < 0x80) {
    s.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    s.push_back(static_cast<char>(0xC0 | (c >> 6)));
    s.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    s.push_back(static_cast<char>(0xE0 | (c >> 12)));
    s.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    s.push_back(static_cast<char>(0xF0 | (c >> 18)));
    s.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

// Hash for maps keyed by std::string and looked up by std::string_view.
struct StringViewHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return static_cast<std::size_t>(XXH3_64bits(s.data(), s.size()));
  }
};

class PieceCache {
 public:
  static constexpr std::size_t kMaxPieces = 1 << 20;  // distinct pieces kept (then the cache starts over)
  static constexpr std::size_t kMaxLen = 256;         // longer pieces are merged every time, not cached

  // Appends the ids of `piece` to out: from the cache, or from merge(piece, out), whose result is then kept.
  template <class Merge>
  void encode(std::string_view piece, std::vector<std::int32_t>& out, const Merge& merge) const {
    if (piece.size() > kMaxLen) {
      merge(piece, out);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto f = cache_.find(piece);
      if (f != cache_.end()) {
        out.insert(out.end(), f->second.begin(), f->second.end());
        return;
      }
    }
    const std::size_t start = out.size();
    merge(piece, out);
    std::vector<std::int32_t> ids(out.begin() + static_cast<std::ptrdiff_t>(start), out.end());
    std::lock_guard<std::mutex> lock(mu_);
    if (cache_.size() >= kMaxPieces) cache_.clear();
    cache_.emplace(std::string(piece), std::move(ids));
  }

 private:
  mutable std::mutex mu_;
  mutable std::unordered_map<std::string, std::vector<std::int32_t>, StringViewHash, std::equal_to<>> cache_;
};

}  // namespace stretch
