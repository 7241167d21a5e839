// Hugging Face tokenizers: a folder with tokenizer.json (the `tokenizers` library's serialization), and optionally
// tokenizer_config.json and generation_config.json, as LLaMA 2/3, TinyLlama, Mistral, Qwen2, GPT-2, SmolLM, MPT
// and BLOOM ship them.
//
// encode(text), as tokenizers' encode(text, add_special_tokens=False):
//   0. text that is not valid UTF-8 has each ill-formed sequence (maximal subpart) replaced by U+FFFD (tokenizers
//      only ever sees valid UTF-8; Python's str cannot hold anything else);
//   1. added tokens whose "normalized" is false are split out of the raw text, leftmost first, longest at a
//      position; single_word drops a match touching a word character (\w: alphabetic, marks, Nd, Pc,
//      Join_Control), lstrip / rstrip take the White_Space around it into the token;
//   2. each remaining segment is normalized (io/tokenizer_hf_normalize.cpp), then split on the added tokens whose
//      "normalized" is true (matched by their normalized content);
//   3. each remaining piece is pre-tokenized (io/tokenizer_hf_pretokenize.cpp) and each sub-piece goes through the
//      BPE model: its characters are looked up in the vocabulary (a missing one becomes its "<0xXX>" byte tokens
//      under byte_fallback, else unk_token, runs of unk fused under fuse_unk, else dropped), then the adjacent pair
//      with the lowest merge rank is merged, leftmost on ties, until none has a rank (io/bpe_merge.hpp). Under
//      ignore_merges a piece that is itself in the vocabulary is taken whole. Pieces up to 256 bytes are cached.
//   Added tokens map straight to their id. No BOS / EOS is added.
// decode(ids): each id's token string (an added token's content, else the vocabulary's), through the decoder
//   (ByteLevel, Metaspace, Sequence of Replace / ByteFallback / Fuse / Strip; none: joined with ' '), as
//   tokenizers' decode(ids, skip_special_tokens=False), except that bytes stay raw where tokenizers writes U+FFFD
//   for invalid UTF-8. So decode(encode(s)) == s wherever tokenizers round-trips s.
// bos_id(): the id the post_processor puts first (TemplateProcessing's single template starting with a special
//   token, RobertaProcessing / BertProcessing's cls, inside a Sequence too), or -1; tokenizer_config.json's
//   add_bos_token, when present, overrides it (true: bos_token's id; false: -1). (transformers 5 itself ignores
//   add_bos_token when there is a tokenizer.json.)
// eos_id(): tokenizer_config.json's eos_token (a string or {"content": ...}), else generation_config.json's
//   eos_token_id (the first when a list), else -1.
// type() "hf"; identity() "hf:" + 16 hex digits of XXH3-128 over tokenizer.json's and tokenizer_config.json's
//   bytes (each preceded by its 64-bit length; an absent config counts as length 2^64-1); describe()
//   {"type": "hf", "dir": absolute folder, "hash": the 16 hex digits}. vocab_size() is the largest id + 1.
//   encode() and decode() may be called from several threads at once.
//
// Supported: model BPE (vocab; merges as "a b" strings or [a, b] pairs; byte_fallback; fuse_unk; unk_token;
// ignore_merges; dropout null or 0; continuing_subword_prefix / end_of_word_suffix null or ""). Refused with an
// InputError naming the file and the JSON key path: other models (WordPiece, Unigram, WordLevel), other
// normalizers / pre-tokenizers / decoders / post-processors, and every malformed input (bad JSON, missing keys,
// wrong types, a merge naming an unknown token, ids out of [0, 2^22) or given twice, an invalid regex). A
// normalizer or decoder that would grow a text past 64 times its size (+4096 bytes) is an InputError at encode /
// decode time (no real one comes near; a chain of Replace steps could otherwise grow it exponentially), as is a
// regex that fails on a text (PCRE2's match limit of 10^7 backtracking steps).
// Ignored: truncation, padding, offsets-only options (trim_offsets), the pair template, and what a template
// appends (EOS, SEP). Approximated: Metaspace's prepend_scheme "first" takes "the piece at the start of the
// input" as the piece starting at byte 0 of the first segment (tokenizers asks whether the piece's original
// offset is 0, which also holds for a piece after text a normalizer inserted there, e.g. Prepend).
#pragma once
#include <filesystem>
#include <memory>

#include "io/tokenizer.hpp"

namespace stretch {

// Loads dir/tokenizer.json (+ tokenizer_config.json, generation_config.json when present).
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::filesystem::path& dir);

// Writes dir/tokenizer.json and dir/tokenizer_config.json (atomically; the folder is created) so that
// transformers' AutoTokenizer.from_pretrained(dir) (offline) and load_hf_tokenizer(dir) give tok.encode()'s ids,
// with BOS first exactly when tok.bos_id() >= 0:
//   byte       a ByteLevel BPE of the 256 byte characters (GPT-2's alphabet), id = byte, no merges
//   gpt2       GPT-2's vocabulary and merges, ByteLevel with GPT-2's regex, <|endoftext|> a special added token
//              (so "<|endoftext|>" in the text becomes its id, where load_gpt2_tokenizer encodes it as text)
//   llama2c, sentencepiece (BPE models only)  a SentencePiece-style BPE: the pieces (" " written as "▁") with
//              byte_fallback and fuse_unk, normalizer Prepend("▁") + Replace(" ", "▁"), decoder Replace / ByteFallback
//              / Fuse / Strip, <unk> <s> </s> special added tokens, a "<s> $A" template and add_bos_token true.
//              Merges: every split of a piece into two pieces (for llama2c: every piece scoring above -1e10, as
//              its encoder merges), ordered by the merged piece's score, highest first (then by id, then the
//              shorter left part). SentencePiece's remove_extra_whitespaces is not expressible (transformers'
//              LlamaConverter drops it too), so text with leading, trailing or repeated spaces can differ from
//              the sentencepiece tokenizer.
//   hf         its tokenizer.json, tokenizer_config.json (and generation_config.json) copied
// Others: ConfigError naming the type.
void write_hf_tokenizer(const Tokenizer& tok, const std::filesystem::path& dir);

// The files of a loaded hf tokenizer (for write_hf_tokenizer); nullptr for other tokenizers.
const std::filesystem::path* hf_tokenizer_dir(const Tokenizer& tok);

}  // namespace stretch
