// Tokenizers: text <-> token ids.
//   byte  vocabulary 256, id = byte value (the default)
//   llama2c  llama2.c's tokenizer.bin (score-greedy BPE, dummy prefix, byte fallback; io/tokenizer_llama2c.hpp)
//   gpt2  GPT-2 byte-level BPE from encoder.json + vocab.bpe (50,257 tokens), GPT-2's pre-tokenization regex
//         's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ with Unicode classes from ICU
//   sentencepiece  a SentencePiece .model through libsentencepiece (io/tokenizer_sentencepiece.cpp); identity
//         "sentencepiece:" + 16 hex digits of XXH3-128 of the file, describe() {"type", "model": path, "hash"}
//   hf    a Hugging Face tokenizer folder (tokenizer.json + tokenizer_config.json) through PCRE2 and ICU
//         (io/tokenizer_hf.hpp); describe() {"type": "hf", "dir": path, "hash"}
// A tokenizer describes itself as JSON ({"type": "byte"} or {"type": "gpt2", "encoder": path, "vocab": path,
// "hash": hex}) so a checkpoint can name the tokenizer it was trained with, and `identity()` is a short string
// that changes whenever the mapping could change (used to key token caches and to compare tokenizers):
// "byte", or "gpt2:" + 16 hex digits of XXH3-128 over both files' bytes (the same digits as describe()["hash"]).
// encode()/decode() are safe to call from several threads at once.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace stretch {

// UTF-8 checks for text that may hold arbitrary bytes (a decoded byte-level model's output, for one):
// valid_utf8 says whether `s` is well-formed; sanitize_utf8 returns `s` with every ill-formed sequence (maximal
// subpart, as ICU's U8_NEXT finds it) replaced by U+FFFD (what JSON reports need: JSON text is UTF-8).
bool valid_utf8(std::string_view s);
std::string sanitize_utf8(std::string_view s);

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<std::int32_t> encode(std::string_view text) const = 0;
  virtual std::string decode(std::span<const std::int32_t> ids) const = 0;
  virtual int vocab_size() const = 0;
  virtual std::string type() const = 0;      // "byte", "gpt2"
  virtual std::string identity() const = 0;  // type plus a hash of the vocabulary files
  virtual nlohmann::json describe() const = 0;
  // True for byte-level tokenizers where one token is one byte (bits per byte then equals bits per token).
  virtual bool is_byte_level() const { return false; }
  // The beginning-of-sequence id that starts every document (llama2c, sentencepiece: 1), or -1 when the
  // tokenizer has none (byte, gpt2).
  virtual std::int32_t bos_id() const { return -1; }
  // The end-of-text id (llama2c, sentencepiece: 2; gpt2: <|endoftext|> 50256), or -1 (byte).
  virtual std::int32_t eos_id() const { return -1; }
};

std::unique_ptr<Tokenizer> make_byte_tokenizer();
// Loads GPT-2 BPE files; InputError naming the file and the problem for a missing or malformed file.
std::unique_ptr<Tokenizer> load_gpt2_tokenizer(const std::filesystem::path& encoder_json,
                                               const std::filesystem::path& vocab_bpe);
// Loads a SentencePiece .model file. encode() gives the pieces' ids WITHOUT BOS/EOS (callers add BOS), after the
// model's own normalization (tok512.model and Llama 2's strip and collapse extra spaces). InputError naming the
// file and the problem for a missing, empty, truncated or corrupt file.
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& model);
// A byte-level BPE vocabulary as GGUF's "gpt2" tokenizer holds it (model/gguf_convert.hpp): token strings in
// GPT-2's byte alphabet (bytes_to_unicode: printable Latin-1 bytes as themselves, the others as U+0100 + n) by id,
// and the merges "left right" in rank order.
struct BpeVocab {
  std::vector<std::string> tokens;
  std::vector<std::string> merges;
};
// The vocabulary of a gpt2 tokenizer, or the byte tokenizer's as one (256 tokens, token b = byte b, no merges);
// nullopt for other tokenizers.
std::optional<BpeVocab> bpe_vocab(const Tokenizer& t);
// True when `v` is exactly the byte tokenizer's vocabulary (as bpe_vocab gives it).
bool is_byte_vocab(const BpeVocab& v);
// Writes `v` as GPT-2's encoder.json (token -> id) and vocab.bpe ("#version: 0.2" then one merge per line), each
// atomically, for importers; load_gpt2_tokenizer reads them back. InputError naming `source` when `v` could not
// be a GPT-2 tokenizer (a token outside the byte alphabet, a byte without its token, a merge of unknown tokens,
// no merges).
void write_gpt2_files(const std::filesystem::path& encoder_json, const std::filesystem::path& vocab_bpe,
                      const BpeVocab& v, const std::string& source);
// The same checks without writing anything.
void check_gpt2_vocab(const BpeVocab& v, const std::string& source);
// From a describe() JSON (as stored in a checkpoint). InputError naming `source` for a bad description.
std::unique_ptr<Tokenizer> tokenizer_from_json(const nlohmann::json& j, const std::string& source);

}  // namespace stretch
