// Synthetic retrieval rows for training (`stretch train --retrieval-mix P`): a model can only be asked whether it
// keeps retrieval past its training length L if it can retrieve at L, and a small model trained on plain text
// cannot (stories260K never does, docs/RESULTS.md). So a fraction P of each step's windows carries one passkey item
// (run/passkey.hpp), the rest of the window being the corpus text that was drawn for it.
//
// An item, for key k uniform in 1..50000, depth d uniform in [0, 1] and a haystack:
//   filler haystack: the passkey prompt text with n fillers (n uniform in 0..n_max, n_max the most that fit in the
//                    window with the answer), tokenized as `stretch passkey` tokenizes it, then the answer
//                    " {k}." — the ids of  BOS? + encode(passkey_text(k, n, d) + " " + k + ".")
//   text haystack:   the same five lines with the fillers replaced by corpus text (a needle in a haystack):
//                    BOS? + encode(I + "\n") + H[0, a) + encode("\n" + N(k) + "\n") + H[a, h) + encode("\n" + Q +
//                    " " + k + "."), H = h consecutive corpus tokens from a uniform start, h uniform in 0..h_max
//                    (h_max: what fits), a = floor(d h + 1/2). For byte-level tokenizers this is exactly the
//                    encoding of the whole text; for BPE ones the pieces are joined at token level.
//   mixed:           one of the two, each with probability 1/2.
// The item is written over the window's tokens at an offset uniform in 0..(T + 1 - item length), so the answer may
// end the window or be followed by text. Every token is a target (x = row[0, T), y = row[1, T + 1)).
//
// Randomness: for every one of the step's `batch` windows (all ranks draw every window, as draw_windows does) one
// uniform decides whether it is synthetic; a synthetic one then takes exactly six more draws (key, depth, filler
// or haystack length, haystack kind, haystack start, offset), so the stream, and a resumed run, does not depend on
// the rank count. With P = 0 nothing is drawn: runs without the option are unchanged bit for bit.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/rng.hpp"
#include "io/tokenizer.hpp"

namespace stretch {

enum class Haystack { filler, text, mixed };
// "filler" | "text" | "mixed"; UsageError naming `flag` otherwise.
Haystack parse_haystack(const std::string& s, const std::string& flag);

struct RetrievalItem {
  std::vector<std::int32_t> ids;  // prompt and answer
  std::size_t answer_start = 0;   // ids[answer_start, size): the tokens after the question (the answer)
};

class RetrievalRows {
 public:
  // The fixed pieces are tokenized once. ConfigError when a window of T + 1 tokens cannot hold the fixed lines and
  // the answer (naming block_size and the tokens needed).
  RetrievalRows(const Tokenizer& tok, int T);

  // The item for these draws (documented above): u_len, u_start in [0, 1) pick the filler count / haystack length
  // and the haystack start in `corpus`.
  RetrievalItem item(int key, double depth, double u_len, bool text_haystack, double u_start,
                     const std::vector<std::int32_t>& corpus) const;

  // Replaces a fraction of this rank's rows of x and y (each (local, T), as draw_windows filled them from `corpus`)
  // by items; draws for all `batch` windows from `rng`. Returns the number of this rank's rows replaced.
  int apply(const std::vector<std::int32_t>& corpus, int batch, int local, int rank, double fraction,
            Haystack haystack, Rng& rng, std::vector<std::int32_t>& x, std::vector<std::int32_t>& y) const;

 private:
  std::vector<std::int32_t> answer_tail(int key) const;  // encode("\n" + Q + " " + k + ".")
  const Tokenizer& tok_;
  int T_;
  std::vector<std::int32_t> head_;  // BOS? + encode(I + "\n")
};

}  // namespace stretch
