// llama2.c's tokenizer (Karpathy's run.c): a SentencePiece BPE vocabulary exported to tokenizer.bin.
//
// File format (little-endian): int32 max_token_length, then for each of vocab_size tokens: float32 score,
// int32 len, len bytes (the token string, SentencePiece's "▁" already replaced by " "). vocab_size is not stored
// in the file: it comes from the model (512 for stories260K's tok512.bin, 32000 for Llama 2), and the file must
// hold exactly that many tokens. Ids 0, 1, 2 are <unk>, <s> (BOS), </s> (EOS); ids 3..258 are the byte-fallback
// tokens "<0x00>".."<0xFF>".
//
// encode() is run.c's encode() without BOS/EOS (callers add BOS, e.g. with llama2c_encode_with_bos()):
//   1. non-empty text starts with the dummy prefix, the id of " ";
//   2. each UTF-8 code point (a lead byte plus up to 3 continuation bytes, grouped as run.c groups them, without
//      validation) is looked up as a string; when absent, each of its bytes b becomes id b + 3 (byte fallback);
//   3. repeatedly, the adjacent pair whose concatenation is in the vocabulary with the highest score (above
//      -1e10, leftmost on ties) is merged, until no pair is in the vocabulary.
// Unlike run.c, which stops at a NUL byte (C strings), a NUL in the text is an ordinary byte (id 3).
// This differs from SentencePiece's own encoder on whitespace: tok512.model (trained by llama2.c with
// SentencePiece's default remove_extra_whitespaces=true) strips leading/trailing spaces and collapses runs of
// spaces before encoding, while run.c encodes every space. On other text the two agree.
//
// decode() is run.c's decode() applied token by token: a token right after BOS (id 1) drops a leading space,
// and byte tokens "<0xXX>" decode to the raw byte. BOS and EOS themselves decode to nothing (run.c never prints
// them: BOS delimits sequences); <unk> (id 0) decodes to its string "<unk>". So
// decode({1} + encode(s)) == s for every s.
//
// Duplicate token strings (none in tok512.bin or Llama 2's tokenizer.bin): run.c's bsearch over a qsorted
// copy makes the id it finds implementation-defined; here the lowest id wins.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "io/tokenizer.hpp"

namespace stretch {

inline constexpr std::int32_t kLlama2cUnk = 0;
inline constexpr std::int32_t kLlama2cBos = 1;
inline constexpr std::int32_t kLlama2cEos = 2;

// Loads a llama2.c tokenizer.bin holding exactly `vocab_size` tokens. InputError naming the file and the
// problem for a missing, truncated or malformed file (or one with trailing bytes: a wrong vocab_size).
// type() "llama2c"; identity() "llama2c:" + 16 hex digits of XXH3-128 of the file's bytes; describe()
// {"type": "llama2c", "path": absolute path, "vocab_size": N, "hash": hex}.
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::filesystem::path& path, int vocab_size);

// BOS (id 1) followed by tok.encode(text), as run.c's encode(text, bos=1, eos=0).
std::vector<std::int32_t> llama2c_encode_with_bos(const Tokenizer& tok, std::string_view text);

// From a describe() JSON {"type": "llama2c", "path", "vocab_size", "hash"}: loads the file and checks that its
// hash still matches. InputError naming `source` for a bad description or a changed file.
std::unique_ptr<Tokenizer> llama2c_tokenizer_from_json(const nlohmann::json& j, const std::string& source);

// Read access to a llama2c tokenizer's vocabulary as stored in its file (pieces with " ", not SentencePiece's
// "▁"), for exporters (model/gguf_convert.hpp).
struct Llama2cVocab {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  int max_token_length = 0;
};
// nullptr when `t` is not a llama2c tokenizer; otherwise valid while `t` lives.
const Llama2cVocab* llama2c_vocab(const Tokenizer& t);

// Writes a tokenizer.bin (the format above) atomically; max_token_length 0 means the longest piece. For
// importers (a GGUF's tokenizer.ggml.* become a file a checkpoint can name). ConfigError when the sizes differ.
void write_llama2c_tokenizer(const std::filesystem::path& path, const Llama2cVocab& v);

}  // namespace stretch
