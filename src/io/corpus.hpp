// Text corpora and their token caches.
//
// A corpus is one or more UTF-8 text files, concatenated in the given order (files joined by "\n\n").
// Tokenized once; the tokens are cached as a binary file named by a hash of the text bytes and the
// tokenizer's identity, so a second run (or a resumed one) skips tokenization:
//   <cache_dir>/<hex hash>.tokens : magic "STRTOK01", u32 version 1, u32 bytes per token (2 or 4),
//                                   u64 count, u64 text bytes, then the tokens (little-endian)
// A cache file that fails its checks is ignored and rewritten (atomically).
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "io/tokenizer.hpp"

namespace stretch {

struct CorpusStats {
  std::uint64_t text_bytes = 0;
  bool from_cache = false;
  std::filesystem::path cache_file;
};

// Throws InputError "<source>: invalid UTF-8 at byte offset N (line L, bytes ...)" at the first ill-formed
// sequence (overlong forms, surrogates, code points past U+10FFFF, truncated or stray continuation bytes).
void validate_utf8(const std::string& text, const std::string& source);

// Reads and validates the files: InputError naming the file when missing, empty, or not valid UTF-8 (with the
// byte offset of the first bad sequence).
std::string read_corpus_text(const std::vector<std::filesystem::path>& files);

// How the text becomes one token stream. By default the whole text is encoded at once. With a separator, the
// text is split at every occurrence of it (the separator itself is dropped), each part is encoded on its own,
// trimmed of surrounding whitespace (as llama2.c's TinyStories preparation strips each story), and, when
// bos >= 0, preceded by the BOS id: llama2.c's and Hugging Face's document-wise preparation
// (TinyStories: separator "\n\n", BOS 1). With no separator and bos >= 0, one BOS starts the stream.
struct Segmenting {
  std::string separator;
  std::int32_t bos = -1;
  bool is_plain() const { return separator.empty() && bos < 0; }
};

// Encodes text as `seg` says (see above).
std::vector<std::int32_t> encode_segmented(const std::string& text, const Tokenizer& tok, const Segmenting& seg);

// Tokens of the corpus, through the cache when cache_dir is not empty (the key includes `seg`).
std::vector<std::int32_t> load_corpus_tokens(const std::vector<std::filesystem::path>& files, const Tokenizer& tok,
                                             const std::filesystem::path& cache_dir, CorpusStats* stats = nullptr,
                                             const Segmenting& seg = {});

// The default cache folder: $STRETCH_CACHE, else $XDG_CACHE_HOME/stretch, else ~/.cache/stretch, else ./.stretch-cache
std::filesystem::path default_cache_dir();

}  // namespace stretch
