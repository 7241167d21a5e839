// Perplexity at any length: the evaluation protocols (docs/EVALUATION.md gives the formulas).
//
// A token stream x_0 .. x_{N-1}; a window (start s, length n) feeds x_s .. x_{s+n-1} at positions 0 .. n-1
// and its position j predicts x_{s+j+1}. Each protocol is a list of windows and, per window, the first
// position whose prediction is scored:
//   nonoverlapping T:  s = 0, T, 2T, ...; every position scored; the last window may be shorter. Every
//                      target x_1 .. x_{N-1} is scored once (the ALiBi paper's default).
//   sliding T, S:      s = 0, S, 2S, ...; the first window scores all its positions, each later one only
//                      targets not scored before (its last S positions), so every scored token except those
//                      of the first window sees at least T - S tokens of context. S = 1 is exact and slow.
//   chunked T:         s = 0, T, 2T, ...; windows of T tokens (the last may be shorter) whose first token is
//                      context only: positions 0 .. n-2 scored, so x_T, x_2T, ... are never targets. The
//                      Hugging Face / llama2.c way (labels = input_ids per chunk); ../shared/REFERENCE.md's
//                      stories260K figures use it.
//   llamacpp T:        llama.cpp's `perplexity`: chunks s = 0, T, 2T, ... of exactly T tokens (a partial last
//                      chunk is dropped), positions T/2 .. T-2 scored (first = T/2, as llama.cpp). Needs
//                      N >= 2T. Like llama.cpp, the chunk's first token is replaced by BOS when the
//                      tokenizer has one (EvalSettings::bos).
// Attention sinks (StreamingLLM's evaluation; EvalSettings::keep >= 0): each window goes through the key/value-cache
// decoder (model/decoder.hpp) with `cache` slots of which the first `keep` tokens stay while the rest slides, so
// a window longer than the cache is scored as a stream in bounded memory: token t sees the window's first `keep`
// tokens and its latest cache - keep ones, at cache positions. A window that fits the cache is the full forward.
// One window per batch (the ranks take windows round-robin); plain position ids only.
// Per length: tokens scored, mean NLL (nats, summed in double), perplexity exp(mean), bits per byte for
// byte-level tokenizers (mean / ln 2), the standard error of the mean NLL (sample std / sqrt(n)), and the NLL
// by position inside the window in `buckets` equal buckets.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "distributed/comm.hpp"
#include "model/transformer.hpp"
#include "position/position_ids.hpp"

namespace stretch {

enum class EvalProtocol { nonoverlapping, sliding, chunked, llamacpp };
std::string_view to_string(EvalProtocol p);
EvalProtocol parse_eval_protocol(std::string_view name, std::string_view what = "`protocol`");

struct Window {
  long start = 0;     // first input token
  int length = 0;     // inputs x[start .. start+length)
  int score_from = 0; // positions score_from .. length-1 are scored (llamacpp: .. length-2)
  int score_to = 0;   // one past the last scored position
};

// The windows of a protocol over a stream of n_tokens tokens. UsageError for T < 1, a bad stride;
// InputError when the stream is shorter than one window (saying how many tokens it has and needs).
std::vector<Window> plan_windows(long n_tokens, int T, EvalProtocol protocol, int stride = 0);

struct EvalSettings {
  EvalProtocol protocol = EvalProtocol::nonoverlapping;
  int stride = 0;              // sliding only; 0: T / 2
  int batch_tokens = 8192;     // windows of equal length are batched up to this many tokens
  int buckets = 8;             // loss by position inside the window
  bool clamp_positions = false;  // learned tables: positions past the table reuse its last row
  long max_tokens = 0;         // stop after this many scored tokens (0: all)
  bool byte_level = false;     // report bits per byte
  std::int32_t bos = -1;       // llamacpp: the first token of each chunk becomes BOS (when >= 0)
  PositionIds positions;       // position ids of each window (plain: 0 .. n-1); randomized needs `seed`
  std::uint64_t seed = 1;
  int keep = -1;               // attention sinks (above); -1: the full forward
  int cache = 0;               // decoder slots with keep >= 0 (> keep)
  // distributed evaluation: this process scores the batches b with b % shards == shard, and the shards' sum_nll,
  // sum_sq and tokens add up to one process's (bucket means and seconds are then this shard's); max_tokens
  // still counts every shard's tokens, so all shards stop at the same batch
  int shard = 0, shards = 1;
};

struct LengthResult {
  int length = 0;
  long tokens = 0;
  double sum_nll = 0.0, sum_sq = 0.0;
  double mean_nll() const { return tokens ? sum_nll / static_cast<double>(tokens) : 0.0; }
  double perplexity() const;
  double stderr_nll() const;  // standard error of the mean
  double bits_per_byte = 0.0; // 0 unless byte-level
  std::vector<double> bucket_nll;  // mean NLL per position bucket
  std::vector<long> bucket_tokens;
  double seconds = 0.0;
};

// Evaluates one model at one length. Throws UsageError (naming --clamp-positions) when a learned position
// table is shorter than the length and clamping was not asked for.
LengthResult evaluate_length(Transformer& model, const std::vector<std::int32_t>& tokens, int T, const EvalSettings& s);

// The same across the ranks of `comm` (mpirun -np N stretch eval): rank r scores the batches of shard r, and the
// tokens, NLL sums and bucket sums are all-reduced, so every rank returns one process's result (the sums in another
// order: equal to about 1e-15 relative). `s.shard` / `s.shards` are set from the communicator. A collective: every
// rank calls it with the same arguments.
LengthResult evaluate_length(Transformer& model, const std::vector<std::int32_t>& tokens, int T, EvalSettings s,
                             Comm& comm);

}  // namespace stretch
