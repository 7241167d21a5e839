#include "run/generate.hpp"

#include <chrono>
#include <memory>

#include "core/error.hpp"

namespace stretch {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Length of the longest prefix of s that does not end inside a UTF-8 sequence.
std::size_t complete_utf8(const std::string& s) {
  std::size_t n = s.size(), i = n;
  int back = 0;
  while (i > 0 && back < 4) {
    const unsigned char c = static_cast<unsigned char>(s[i - 1]);
    if ((c & 0xC0) != 0x80) {  // a lead byte (or ASCII) at i-1
      const int need = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
      return (n - (i - 1)) >= static_cast<std::size_t>(need) ? n : i - 1;
    }
    i--;
    back++;
  }
  return n;
}
}  // namespace

std::vector<std::int32_t> prompt_ids(const Tokenizer& tok, const std::string& prompt) {
  std::vector<std::int32_t> ids;
  if (tok.bos_id() >= 0) ids.push_back(tok.bos_id());
  auto body = tok.encode(prompt);
  ids.insert(ids.end(), body.begin(), body.end());
  if (ids.empty()) ids.push_back(tok.eos_id() >= 0 ? tok.eos_id() : tok.encode("\n").at(0));
  return ids;
}

GenerateStats generate(Transformer& model, const Tokenizer& tok, const std::string& prompt, const GenerateOptions& o,
                       const std::function<void(const std::string&)>& emit) {
  if (o.max_new < 0) throw UsageError("`max_new`: expected a number of tokens >= 0");
  o.sampling.validate();
  const ModelConfig& c = model.config();
  if (tok.vocab_size() > c.vocab_size)
    throw InputError("the tokenizer has " + std::to_string(tok.vocab_size()) + " tokens but the model only " +
                     std::to_string(c.vocab_size));
  const int ctx = o.ctx > 0 ? o.ctx : c.block_size;
  if (o.keep >= 0 && !o.slide)
    throw UsageError("`keep`: attention sinks are kept while the cache slides, and `slide` turns sliding off");
  std::unique_ptr<Decoder> made;
  try {
    made = std::make_unique<Decoder>(model, ctx, o.slide && (o.keep >= 0 || Decoder::can_slide(c.position)), o.keep, FieldNames{}, o.kv_type);
  } catch (const ConfigError& e) {
    throw UsageError(e.what());
  }
  Decoder& dec = *made;
  Sampler sampler(o.sampling);
  std::vector<std::int32_t> ids = prompt_ids(tok, prompt);
  GenerateStats st;
  st.prompt_tokens = static_cast<long>(ids.size());
  st.ctx = ctx;
  st.cache_bytes = dec.cache_bytes();
  if (!dec.can_slide() && static_cast<long>(ids.size()) > ctx)
    throw ContextFull("the prompt has " + std::to_string(ids.size()) + " tokens, more than `ctx` " +
                      std::to_string(ctx) + " (raise `ctx`" +
                      (c.position == PositionMethod::rope
                           ? ", with `rope_scaling` to reach past the trained length, or slide with `keep` N)"
                           : ")"));
  std::string shown = tok.decode(ids);  // the prompt, as the continuation's prefix (not emitted)
  std::size_t emitted = shown.size();

  auto t0 = Clock::now();
  const float* logits = dec.append(ids.data(), static_cast<int>(ids.size()));
  st.prefill_s = since(t0);
  t0 = Clock::now();
  for (int k = 0; k < o.max_new; k++) {
    const std::int32_t next = sampler.next(logits, c.vocab_size);
    if (o.stop_at_eos && (next == tok.eos_id() || (next == tok.bos_id() && tok.bos_id() >= 0))) break;
    ids.push_back(next);
    st.generated++;
    const std::string text = tok.decode(ids);
    const std::size_t ready = complete_utf8(text);
    if (ready > emitted) {
      emit(text.substr(emitted, ready - emitted));
      emitted = ready;
    }
    if (k + 1 == o.max_new) break;
    if (!dec.can_slide() && dec.length() >= ctx)
      throw ContextFull("generation reached `ctx` " + std::to_string(ctx) + " after " + std::to_string(st.generated) +
                        " tokens (raise `ctx`" +
                        (c.position == PositionMethod::rope
                             ? ", with `rope_scaling` past the trained length, or slide with `keep` N)"
                             : ")"));
    logits = dec.append(&next, 1);
  }
  const std::string text = tok.decode(ids);
  if (text.size() > emitted) emit(text.substr(emitted));
  st.decode_s = since(t0);
  st.slid = dec.length() > ctx;
  return st;
}

}  // namespace stretch
