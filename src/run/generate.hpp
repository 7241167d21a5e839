// Text generation: prompt -> tokens streamed as text (model/decoder.hpp does the cached forward).
//
// The prompt is encoded with the model's tokenizer, after its BOS when it has one (llama2c, sentencepiece). An
// empty prompt starts from BOS; tokenizers without one start from <|endoftext|> (gpt2) or a newline (byte).
// Generation stops after max_new tokens, or at EOS / a new BOS when the tokenizer has them and stop_at_eos.
// Text is emitted as soon as it is complete: the decoded text of prompt + generated tokens, minus what was
// already emitted, holding back a trailing incomplete UTF-8 sequence (byte-level and byte-fallback tokens).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/tokenizer.hpp"
#include "model/decoder.hpp"
#include "run/sampler.hpp"

namespace stretch {

struct GenerateOptions {
  int max_new = 256;
  int ctx = 0;          // cache slots; 0: the model's trained length (block_size)
  bool slide = true;    // drop the oldest tokens past ctx when the model allows it (alibi, t5, none; any with keep)
  int keep = -1;        // attention sinks: keep the first `keep` tokens while sliding (model/decoder.hpp); -1: none
  KvType kv_type = KvType::f32;  // the cache's element type (model/decoder.hpp)
  bool stop_at_eos = true;
  SamplingOptions sampling;
};

struct GenerateStats {
  long prompt_tokens = 0, generated = 0;
  double prefill_s = 0.0, decode_s = 0.0;
  std::size_t cache_bytes = 0;
  int ctx = 0;
  bool slid = false;  // generation went past ctx by dropping old tokens
};

// The prompt's ids as generation feeds them (BOS first when the tokenizer has one; see above for empty prompts).
std::vector<std::int32_t> prompt_ids(const Tokenizer& tok, const std::string& prompt);

// Streams the continuation of `prompt` through emit(text piece). Throws ContextFull (naming `ctx`) when the
// prompt does not fit and the model cannot slide; UsageError naming `keep` or `ctx` for sinks the model or the
// cache cannot have.
GenerateStats generate(Transformer& model, const Tokenizer& tok, const std::string& prompt, const GenerateOptions& o,
                       const std::function<void(const std::string&)>& emit);

}  // namespace stretch
