#include "run/retrieval_data.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "run/generate.hpp"
#include "run/passkey.hpp"

namespace stretch {

namespace {

// floor(u * n) for u in [0, 1), clamped to n - 1 (n >= 1)
long pick(double u, long n) { return std::min<long>(n - 1, static_cast<long>(std::floor(u * static_cast<double>(n)))); }

}  // namespace

Haystack parse_haystack(const std::string& s, const std::string& flag) {
  if (s == "filler") return Haystack::filler;
  if (s == "text") return Haystack::text;
  if (s == "mixed") return Haystack::mixed;
  throw UsageError(flag + ": expected filler, text or mixed, got '" + s + "'");
}

RetrievalRows::RetrievalRows(const Tokenizer& tok, int T) : tok_(tok), T_(T) {
  head_ = prompt_ids(tok, std::string(kPasskeyInstruction) + "\n");
  // the longest fixed part: a five-digit key, no filler or haystack
  const std::size_t fixed_text = prompt_ids(tok, passkey_text(kPasskeyMaxKey, 0, 0.0) + " " +
                                                     std::to_string(kPasskeyMaxKey) + ".").size();
  const std::size_t fixed_tokens = head_.size() + tok.encode("\n" + passkey_needle(kPasskeyMaxKey) + "\n").size() +
                                   answer_tail(kPasskeyMaxKey).size();
  // the largest item with no filler and no haystack
  const int min_tokens = static_cast<int>(std::max(fixed_text, fixed_tokens));
  if (min_tokens > T + 1)
    throw ConfigError("retrieval_mix: a passkey item takes up to " + std::to_string(min_tokens) +
                      " tokens with this tokenizer (instruction, needle, question and answer), more than a training "
                      "window of block_size + 1 = " + std::to_string(T + 1) + " holds; use a block_size of at least " +
                      std::to_string(min_tokens - 1));
}

std::vector<std::int32_t> RetrievalRows::answer_tail(int key) const {
  return tok_.encode("\n" + std::string(kPasskeyQuestion) + " " + std::to_string(key) + ".");
}

RetrievalItem RetrievalRows::item(int key, double depth, double u_len, bool text_haystack, double u_start,
                                  const std::vector<std::int32_t>& corpus) const {
  RetrievalItem it;
  const std::string answer = " " + std::to_string(key) + ".";
  if (!text_haystack) {
    const int answer_len = static_cast<int>(tok_.encode(answer).size());
    const int n_max = build_passkey_prompt(tok_, key, depth, T_ + 1 - answer_len).fillers;
    int n = static_cast<int>(pick(u_len, n_max + 1L));
    const std::string text = passkey_text(key, n, depth);
    it.ids = prompt_ids(tok_, text + answer);
    // a BPE tokenizer may join the answer's first token with the prompt's end: then one filler less
    while (static_cast<long>(it.ids.size()) > T_ + 1 && n > 0)
      it.ids = prompt_ids(tok_, passkey_text(key, --n, depth) + answer);
    it.answer_start = std::min(it.ids.size(), prompt_ids(tok_, passkey_text(key, n, depth)).size());
    return it;
  }
  const auto needle = tok_.encode("\n" + passkey_needle(key) + "\n");
  const auto tail = answer_tail(key);
  const long fixed = static_cast<long>(head_.size() + needle.size() + tail.size());
  const long h_max = std::max(0L, static_cast<long>(T_) + 1 - fixed);
  const long h = pick(u_len, h_max + 1);
  const long start = pick(u_start, static_cast<long>(corpus.size()) - h + 1);
  const long a = std::clamp(static_cast<long>(std::floor(depth * static_cast<double>(h) + 0.5)), 0L, h);
  const auto hay = corpus.begin() + start;
  it.ids = head_;
  it.ids.insert(it.ids.end(), hay, hay + a);
  it.ids.insert(it.ids.end(), needle.begin(), needle.end());
  it.ids.insert(it.ids.end(), hay + a, hay + h);
  it.ids.insert(it.ids.end(), tail.begin(), tail.end());
  it.answer_start = it.ids.size() - tok_.encode(answer).size();
  return it;
}

int RetrievalRows::apply(const std::vector<std::int32_t>& corpus, int batch, int local, int rank, double fraction,
                         Haystack haystack, Rng& rng, std::vector<std::int32_t>& x,
                         std::vector<std::int32_t>& y) const {
  if (!(fraction > 0.0)) return 0;
  const std::size_t T = static_cast<std::size_t>(T_);
  std::vector<std::int32_t> row(T + 1);
  int replaced = 0;
  for (int gb = 0; gb < batch; gb++) {
    if (!(rng.uniform() < fraction)) continue;
    const int key = 1 + static_cast<int>(rng.below(kPasskeyMaxKey));
    const double depth = rng.uniform();
    const double u_len = rng.uniform();
    const float u_kind = rng.uniform();
    const bool text = haystack == Haystack::text || (haystack == Haystack::mixed && u_kind < 0.5f);
    const double u_start = rng.uniform();
    const double u_off = rng.uniform();
    const int b = gb - rank * local;
    if (b < 0 || b >= local) continue;
    const RetrievalItem it = item(key, depth, u_len, text, u_start, corpus);
    auto xb = x.begin() + static_cast<long>(b) * T_;
    auto yb = y.begin() + static_cast<long>(b) * T_;
    std::copy(xb, xb + T_, row.begin());
    row[T] = yb[T_ - 1];
    const long off = pick(u_off, static_cast<long>(T + 1 - it.ids.size()) + 1);
    std::copy(it.ids.begin(), it.ids.end(), row.begin() + off);
    std::copy(row.begin(), row.begin() + T_, xb);
    std::copy(row.begin() + 1, row.end(), yb);
    replaced++;
  }
  return replaced;
}

}  // namespace stretch
