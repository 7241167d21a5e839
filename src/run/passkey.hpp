// Passkey retrieval (Mohtashami & Jaggi's landmark-attention protocol, reused by Position Interpolation and YaRN):
// can the model still use a token far back? docs/RETRIEVAL.md has the protocol, this file the exact text.
//
// The prompt of a trial with key k, n filler sentences and the needle at depth d in [0, 1] is five lines joined
// by "\n" (the landmark protocol's "\n".join of [task, garbage prefix, information line, garbage suffix,
// question]):
//   I = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will
//        quiz you about the important information there."                                   (one line)
//   F^m = m copies of "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
//         joined by single spaces (the empty string for m = 0)
//   N(k) = "The pass key is {k}. Remember it. {k} is the pass key."        ({k} decimal, no leading zeros)
//   Q = "What is the pass key? The pass key is"
//   text = I + "\n" + F^a + "\n" + N(k) + "\n" + F^(n-a) + "\n" + Q,   a = floor(d n + 1/2)
// (the landmark code cuts its filler at a character count; here whole sentences are counted, so depth 0 puts
// the needle right after the instruction line and depth 1 right before the question). The prompt's token ids are
// the tokenizer's BOS when it has one (llama2c, sentencepiece; as eval and generate do), then encode(text).
// n is the largest filler count whose prompt has at most `length` tokens (the prompt is as close as possible to
// the target length without exceeding it; found by stepping from an estimate, assuming the count grows with n).
//
// The key of trial t of the cell (length L, depth d) under seed s, with sm(z) splitmix64's finalizer
// (z += 0x9e3779b97f4a7c15; z = (z ^ z >> 30) * 0xbf58476d1ce4e5b9; z = (z ^ z >> 27) * 0x94d049bb133111eb;
// z ^ z >> 31) and D = round(d * 10^6):
//   h = sm(sm(sm(sm(s) ^ L) ^ D) ^ t),   k = 1 + Rng(h).below(50000)     (core/rng.hpp: xoshiro256**, Lemire)
// so any cell's prompt is reproducible from (seed, length, depth, trial) alone, whatever else was swept.
//
// Needle in a haystack (PasskeySettings::haystack, `--haystack FILE`): the fillers are replaced by consecutive words
// of a real text (its whitespace runs made single spaces), the same five lines around them:
//   text = I + "\n" + W[0, a) + "\n" + N(k) + "\n" + W[a, w) + "\n" + Q,   a = floor(d w + 1/2)
// with W the words joined by single spaces, taken cyclically from word s, and w the largest word count whose
// prompt fits in the length (as n above). s is a function of the trial too: s = Rng(sm(h ^ 0x4861797374616b)).below
// (number of words), h as above; so the prompt of any cell is still reproducible from (seed, length, depth, trial).
// The text may hold other numbers: retrieval must find the one after "The pass key is".
//
// A trial feeds the prompt to the model's key/value-cache decoder (model/decoder.hpp), decodes `answer_tokens`
// (10) tokens greedily (argmax, the lowest id on ties; stopping early at EOS or a new BOS), decodes them to text
// and is correct when the first integer in that text (the first maximal run of ASCII digits, read in decimal;
// leading text is skipped, digits split across tokens join since the whole output is decoded at once) equals k.
// No digits: no answer, incorrect.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "distributed/comm.hpp"
#include "io/tokenizer.hpp"
#include "model/decoder.hpp"
#include "model/transformer.hpp"

namespace stretch {

inline constexpr std::string_view kPasskeyInstruction =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you "
    "about the important information there.";
inline constexpr std::string_view kPasskeyFiller =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
inline constexpr std::string_view kPasskeyQuestion = "What is the pass key? The pass key is";
inline constexpr int kPasskeyMaxKey = 50000;

// "The pass key is {k}. Remember it. {k} is the pass key."
std::string passkey_needle(int key);
// a = floor(depth * n_filler + 1/2): the fillers before the needle.
int passkey_fillers_before(int n_filler, double depth);
// The prompt text (above).
std::string passkey_text(int key, int n_filler, double depth);
// The key of trial `trial` of cell (length, depth) under `seed` (above), in [1, 50000].
int passkey_key(std::uint64_t seed, int length, double depth, int trial);
// The first integer of `text` (above); values past 10^18 saturate at 10^18 (never a key). nullopt: no digits.
std::optional<long long> first_integer(std::string_view text);

// A haystack text as words (whitespace runs collapsed); InputError naming `source` when it has fewer than 16 words.
std::vector<std::string> haystack_words(const std::string& text, const std::string& source);
// The first haystack word of trial `trial` of cell (length, depth) under `seed` (above), in [0, n_words).
std::size_t haystack_start(std::uint64_t seed, int length, double depth, int trial, std::size_t n_words);

struct PasskeyPrompt {
  int key = 0;
  int fillers = 0;          // n (with a haystack: the words w)
  int fillers_before = 0;   // a
  std::string text;
  std::vector<std::int32_t> ids;  // BOS (when the tokenizer has one) + encode(text); ids.size() <= length
};
// The prompt with the most fillers that fits in `length` tokens. UsageError naming --lengths when even no filler
// fits (saying how many tokens the fixed lines take).
PasskeyPrompt build_passkey_prompt(const Tokenizer& tok, int key, double depth, int length);
// The haystack form (above): words from `start`, cyclically.
PasskeyPrompt build_haystack_prompt(const Tokenizer& tok, int key, double depth, int length,
                                    const std::vector<std::string>& words, std::size_t start);

struct PasskeySettings {
  std::vector<double> depths = {0.0, 0.25, 0.5, 0.75, 1.0};
  int trials = 1;
  std::uint64_t seed = 1;
  int answer_tokens = 10;
  int ctx = 0;     // decoder cache slots; 0: each prompt's length + answer_tokens
  int keep = -1;   // attention sinks while sliding (model/decoder.hpp); -1: the model's own sliding rule
  KvType kv_type = KvType::f32;  // the decoder cache's element type (model/decoder.hpp)
  bool alibi_interp_auto = false;  // ALiBi interpolation to each cell's length (position/alibi.hpp)
  std::vector<std::string> haystack;  // needle in a haystack: these words instead of the fillers (empty: fillers)
  std::string haystack_name;          // the haystack's file, for the reports
};

struct PasskeyTrial {
  int key = 0;
  int fillers = 0;
  int prompt_tokens = 0;
  std::string output;  // the decoded answer tokens
  std::optional<long long> answer;
  bool correct = false;
  double seconds = 0.0;
};

struct PasskeyCell {
  int length = 0;
  double depth = 0.0;
  std::vector<PasskeyTrial> trials;
  int correct() const;
  double accuracy() const { return trials.empty() ? 0.0 : static_cast<double>(correct()) / trials.size(); }
};

struct PasskeyModelResult {
  std::string name;      // as given on the command line
  std::string position;  // position method and context settings
  int train_length = 0;
  std::vector<PasskeyCell> cells;  // lengths in the given order, depths inside each length
  // accuracy over every depth and trial of one length
  double length_accuracy(int length) const;
};

// One trial: the prompt through the decoder, then the greedy answer. ContextFull (a UsageError naming --ctx)
// when the prompt does not fit the cache and the model cannot slide.
PasskeyTrial run_passkey_trial(Transformer& model, const Tokenizer& tok, const PasskeyPrompt& prompt,
                               const PasskeySettings& s);

// Every cell (length x depth x trial) of one model. The trials are numbered in the order lengths, depths, trials;
// rank r of `comm` runs those whose number is r mod size, then every rank gets all results (one all-reduce), so
// the result does not depend on the number of ranks. The checks that can fail (a length below the prompt's
// fixed lines, a learned table shorter than length + answer_tokens) run on every rank before any trial.
// `on_trial` (may be empty) is called after each trial this rank ran.
PasskeyModelResult passkey_sweep(Transformer& model, const Tokenizer& tok, const std::vector<int>& lengths,
                                 const PasskeySettings& s, Comm& comm,
                                 const std::function<void(const PasskeyCell&, const PasskeyTrial&)>& on_trial = {});

// Reports: a table of accuracy by length and one of length x depth (percent correct), JSON (every trial), CSV
// (one row per trial) and a heat map PNG (gnuplot; one panel per model, depth up, length across).
struct PasskeyReport {
  std::uint64_t seed = 1;
  std::string haystack;  // the haystack's file; empty: the passkey fillers
  int trials = 1;
  int answer_tokens = 10;
  std::vector<PasskeyModelResult> models;
};
std::string passkey_table(const PasskeyModelResult& m);
nlohmann::json to_json(const PasskeyReport& r);
std::string to_csv(const PasskeyReport& r);
void plot_passkey_png(const PasskeyReport& r, const std::filesystem::path& png);

}  // namespace stretch
