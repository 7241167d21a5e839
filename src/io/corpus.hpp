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

// Reads and validates the files: InputError naming the file when missing, empty, or not valid UTF-8 (with the
// byte offset of the first bad sequence).
std::string read_corpus_text(const std::vector<std::filesystem::path>& files);

// Tokens of the corpus, through the cache when cache_dir is not empty.
std::vector<std::int32_t> load_corpus_tokens(const std::vector<std::filesystem::path>& files, const Tokenizer& tok,
                                             const std::filesystem::path& cache_dir, CorpusStats* stats = nullptr);

// The default cache folder: $STRETCH_CACHE, else $XDG_CACHE_HOME/stretch, else ~/.cache/stretch, else ./.stretch-cache
std::filesystem::path default_cache_dir();

}  // namespace stretch
