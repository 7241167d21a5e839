#include "run/passkey.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "model/decoder.hpp"
#include "run/generate.hpp"
#include "run/report.hpp"
#include "run/sampler.hpp"

namespace stretch {

namespace {

std::uint64_t splitmix(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::string repeat_filler(int m) {
  std::string s;
  s.reserve(static_cast<std::size_t>(m) * (kPasskeyFiller.size() + 1));
  for (int i = 0; i < m; i++) {
    if (i) s += ' ';
    s += kPasskeyFiller;
  }
  return s;
}

std::string depth_str(double d) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", d);
  return b;
}

}  // namespace

std::string passkey_needle(int key) {
  const std::string k = std::to_string(key);
  return "The pass key is " + k + ". Remember it. " + k + " is the pass key.";
}

int passkey_fillers_before(int n_filler, double depth) {
  const int a = static_cast<int>(std::floor(depth * n_filler + 0.5));
  return std::clamp(a, 0, n_filler);
}

std::string passkey_text(int key, int n_filler, double depth) {
  const int a = passkey_fillers_before(n_filler, depth);
  return std::string(kPasskeyInstruction) + "\n" + repeat_filler(a) + "\n" + passkey_needle(key) + "\n" +
         repeat_filler(n_filler - a) + "\n" + std::string(kPasskeyQuestion);
}

namespace {
// h = sm(sm(sm(sm(seed) ^ length) ^ round(depth 10^6)) ^ trial): a trial's hash, for its key and haystack start
std::uint64_t trial_hash(std::uint64_t seed, int length, double depth, int trial) {
  const auto D = static_cast<std::uint64_t>(std::llround(depth * 1e6));
  std::uint64_t h = splitmix(seed);
  h = splitmix(h ^ static_cast<std::uint64_t>(length));
  h = splitmix(h ^ D);
  return splitmix(h ^ static_cast<std::uint64_t>(trial));
}
}  // namespace

int passkey_key(std::uint64_t seed, int length, double depth, int trial) {
  Rng rng(trial_hash(seed, length, depth, trial));
  return 1 + static_cast<int>(rng.below(kPasskeyMaxKey));
}

std::optional<long long> first_integer(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size() && !(text[i] >= '0' && text[i] <= '9')) i++;
  if (i == text.size()) return std::nullopt;
  constexpr long long kCap = 1000000000000000000LL;
  long long v = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; i++)
    v = v > (kCap - (text[i] - '0')) / 10 ? kCap : v * 10 + (text[i] - '0');
  return v;
}

namespace {

// The prompt with the most units (fillers, haystack words) that fits in `length` tokens, text_for(n) giving the
// text with n units: estimated from the tokens of `probe` units, then stepped to the largest n that fits (the
// token count grows with n). UsageError naming --lengths when even none fits.
PasskeyPrompt fit_prompt(const Tokenizer& tok, int key, double depth, int length, int probe,
                         const std::function<std::string(int)>& text_for) {
  auto count = [&](int n) { return static_cast<long>(prompt_ids(tok, text_for(n)).size()); };
  const long base = count(0);
  if (base > length)
    throw UsageError("`lengths`: a passkey prompt of " + std::to_string(length) + " tokens cannot hold the fixed "
                     "lines (instruction, needle, question), which take " + std::to_string(base) +
                     " tokens with this tokenizer; use lengths of at least " + std::to_string(base));
  const double per = std::max(0.25, static_cast<double>(count(probe) - base) / probe);
  int n = std::max(0, static_cast<int>((length - base) / per));
  while (n > 0 && count(n) > length) n = std::max(0, n - 1 - static_cast<int>((count(n) - length) / per));
  while (count(n + 1) <= length) n++;
  PasskeyPrompt p;
  p.key = key;
  p.fillers = n;
  p.fillers_before = passkey_fillers_before(n, depth);
  p.text = text_for(n);
  p.ids = prompt_ids(tok, p.text);
  return p;
}

}  // namespace

PasskeyPrompt build_passkey_prompt(const Tokenizer& tok, int key, double depth, int length) {
  return fit_prompt(tok, key, depth, length, 8, [&](int n) { return passkey_text(key, n, depth); });
}

std::vector<std::string> haystack_words(const std::string& text, const std::string& source) {
  std::vector<std::string> words;
  std::string w;
  for (char ch : text) {
    if (ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r' || ch == '\f' || ch == '\v') {
      if (!w.empty()) words.push_back(std::move(w));
      w.clear();
    } else {
      w += ch;
    }
  }
  if (!w.empty()) words.push_back(std::move(w));
  if (words.size() < 16)
    throw InputError(source + ": a haystack needs at least 16 words of text, got " + std::to_string(words.size()));
  return words;
}

std::size_t haystack_start(std::uint64_t seed, int length, double depth, int trial, std::size_t n_words) {
  Rng rng(splitmix(trial_hash(seed, length, depth, trial) ^ 0x4861797374616bULL));
  return static_cast<std::size_t>(rng.below(n_words));
}

PasskeyPrompt build_haystack_prompt(const Tokenizer& tok, int key, double depth, int length,
                                    const std::vector<std::string>& words, std::size_t start) {
  auto text_for = [&](int w) {
    const int a = passkey_fillers_before(w, depth);
    std::string before, after;
    for (int i = 0; i < w; i++) {
      std::string& dst = i < a ? before : after;
      if (!dst.empty()) dst += ' ';
      dst += words[(start + static_cast<std::size_t>(i)) % words.size()];
    }
    return std::string(kPasskeyInstruction) + "\n" + before + "\n" + passkey_needle(key) + "\n" + after + "\n" +
           std::string(kPasskeyQuestion);
  };
  return fit_prompt(tok, key, depth, length, 32, text_for);
}

int PasskeyCell::correct() const {
  int n = 0;
  for (auto& t : trials) n += t.correct;
  return n;
}

double PasskeyModelResult::length_accuracy(int length) const {
  long n = 0, ok = 0;
  for (auto& c : cells)
    if (c.length == length) {
      n += static_cast<long>(c.trials.size());
      ok += c.correct();
    }
  return n ? static_cast<double>(ok) / n : 0.0;
}

PasskeyTrial run_passkey_trial(Transformer& model, const Tokenizer& tok, const PasskeyPrompt& prompt,
                               const PasskeySettings& s) {
  const auto t0 = std::chrono::steady_clock::now();
  const ModelConfig& c = model.config();
  const int n = static_cast<int>(prompt.ids.size());
  const int ctx = s.ctx > 0 ? s.ctx : n + s.answer_tokens;
  std::unique_ptr<Decoder> made;
  try {
    made = std::make_unique<Decoder>(model, ctx, s.keep >= 0 || Decoder::can_slide(c.position), s.keep, FieldNames{}, s.kv_type);
  } catch (const ConfigError& e) {
    throw UsageError(e.what());
  }
  Decoder& dec = *made;
  if (!dec.can_slide() && n + s.answer_tokens > ctx)
    throw ContextFull("`ctx` " + std::to_string(ctx) + " cannot hold a prompt of " + std::to_string(n) +
                      " tokens and its " + std::to_string(s.answer_tokens) + " answer tokens, and a " +
                      std::string(to_string(c.position)) + " model cannot slide past it (raise `ctx`, or pass `keep` N to slide with attention sinks)");
  SamplingOptions so;
  so.temperature = 0.0;
  Sampler greedy(so);
  std::vector<std::int32_t> out;
  const float* logits = dec.append(prompt.ids.data(), n);
  for (int k = 0; k < s.answer_tokens; k++) {
    const std::int32_t next = greedy.next(logits, c.vocab_size);
    if (next == tok.eos_id() || (tok.bos_id() >= 0 && next == tok.bos_id())) break;
    out.push_back(next);
    if (k + 1 < s.answer_tokens) logits = dec.append(&next, 1);
  }
  PasskeyTrial t;
  t.key = prompt.key;
  t.fillers = prompt.fillers;
  t.prompt_tokens = n;
  t.output = tok.decode(out);
  t.answer = first_integer(t.output);
  t.correct = t.answer && *t.answer == prompt.key;
  t.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return t;
}

namespace {
// What each trial sends to the other ranks (doubles, all-reduced with a sum: every other rank contributes 0):
// fillers, prompt tokens, seconds, output length, then up to kOutBytes bytes of the output.
constexpr std::size_t kOutBytes = 256;
constexpr std::size_t kTrialDoubles = 4 + kOutBytes;
}  // namespace

PasskeyModelResult passkey_sweep(Transformer& model, const Tokenizer& tok, const std::vector<int>& lengths,
                                 const PasskeySettings& s, Comm& comm,
                                 const std::function<void(const PasskeyCell&, const PasskeyTrial&)>& on_trial) {
  if (s.trials < 1) throw UsageError("`trials`: expected an integer >= 1, got " + std::to_string(s.trials));
  if (s.answer_tokens < 1) throw UsageError("`answer_tokens`: expected an integer >= 1");
  if (s.depths.empty()) throw UsageError("`depths`: expected at least one depth in [0, 1]");
  for (double d : s.depths)
    if (!(d >= 0.0 && d <= 1.0)) throw UsageError("`depths`: " + depth_str(d) + " is outside [0, 1]");
  const ModelConfig& c = model.config();
  for (int L : lengths) {
    if (L < 1) throw UsageError("`lengths`: expected positive lengths, got " + std::to_string(L));
    if (c.position == PositionMethod::learned && L + s.answer_tokens > c.block_size)
      throw UsageError("`lengths`: " + std::to_string(L) + " tokens and " + std::to_string(s.answer_tokens) +
                       " answer tokens need positions up to " + std::to_string(L + s.answer_tokens - 1) +
                       ", past the model's learned table of " + std::to_string(c.block_size) +
                       " positions: the largest length it can reach is " +
                       std::to_string(c.block_size - s.answer_tokens));
    build_passkey_prompt(tok, kPasskeyMaxKey, 0.0, L);  // refuses a length below the fixed lines, on every rank
  }
  PasskeyModelResult r;
  r.train_length = c.block_size;
  for (int L : lengths)
    for (double d : s.depths) {
      PasskeyCell cell;
      cell.length = L;
      cell.depth = d;
      cell.trials.resize(static_cast<std::size_t>(s.trials));
      r.cells.push_back(std::move(cell));
    }
  const int rank = comm.rank(), size = comm.size();
  std::vector<double> buf(r.cells.size() * static_cast<std::size_t>(s.trials) * kTrialDoubles, 0.0);
  long number = 0;
  for (std::size_t ci = 0; ci < r.cells.size(); ci++) {
    PasskeyCell& cell = r.cells[ci];
    for (int t = 0; t < s.trials; t++, number++) {
      if (number % size != rank) continue;
      if (s.alibi_interp_auto && c.position == PositionMethod::alibi)
        model.set_alibi_interp(cell.length > c.block_size ? cell.length : 0);
      const int key = passkey_key(s.seed, cell.length, cell.depth, t);
      const PasskeyPrompt p =
          s.haystack.empty()
              ? build_passkey_prompt(tok, key, cell.depth, cell.length)
              : build_haystack_prompt(tok, key, cell.depth, cell.length, s.haystack,
                                      haystack_start(s.seed, cell.length, cell.depth, t, s.haystack.size()));
      PasskeyTrial tr = run_passkey_trial(model, tok, p, s);
      double* o = buf.data() + static_cast<std::size_t>(number) * kTrialDoubles;
      o[0] = tr.fillers;
      o[1] = tr.prompt_tokens;
      o[2] = tr.seconds;
      const std::size_t nb = std::min(kOutBytes, tr.output.size());
      o[3] = static_cast<double>(nb);
      for (std::size_t b = 0; b < nb; b++) o[4 + b] = static_cast<unsigned char>(tr.output[b]);
      cell.trials[static_cast<std::size_t>(t)] = tr;
      if (on_trial) on_trial(cell, tr);
    }
  }
  if (size > 1) {
    comm.allreduce_sum(buf.data(), buf.size());
    number = 0;
    for (auto& cell : r.cells)
      for (int t = 0; t < s.trials; t++, number++) {
        if (number % size == rank) continue;
        const double* o = buf.data() + static_cast<std::size_t>(number) * kTrialDoubles;
        PasskeyTrial& tr = cell.trials[static_cast<std::size_t>(t)];
        tr.key = passkey_key(s.seed, cell.length, cell.depth, t);
        tr.fillers = static_cast<int>(o[0]);
        tr.prompt_tokens = static_cast<int>(o[1]);
        tr.seconds = o[2];
        tr.output.clear();
        for (int b = 0; b < static_cast<int>(o[3]); b++) tr.output += static_cast<char>(static_cast<int>(o[4 + b]));
        tr.answer = first_integer(tr.output);
        tr.correct = tr.answer && *tr.answer == tr.key;
      }
  }
  return r;
}

std::string passkey_table(const PasskeyModelResult& m) {
  std::vector<int> lengths;
  std::vector<double> depths;
  for (auto& c : m.cells) {
    if (std::find(lengths.begin(), lengths.end(), c.length) == lengths.end()) lengths.push_back(c.length);
    if (std::find(depths.begin(), depths.end(), c.depth) == depths.end()) depths.push_back(c.depth);
  }
  char b[256];
  std::string out = m.name + " (" + m.position + ", L=" + std::to_string(m.train_length) + ")\n";
  std::snprintf(b, sizeof b, "%8s %8s %9s %9s |", "length", "tokens", "correct", "accuracy");
  out += b;
  for (double d : depths) {
    std::snprintf(b, sizeof b, " %7s", ("d=" + depth_str(d)).c_str());
    out += b;
  }
  out += "\n";
  for (int L : lengths) {
    long n = 0, ok = 0, tokens = 0;
    for (auto& c : m.cells)
      if (c.length == L)
        for (auto& t : c.trials) {
          n++;
          ok += t.correct;
          tokens += t.prompt_tokens;
        }
    std::snprintf(b, sizeof b, "%8d %8.0f %4ld/%-4ld %8.1f%% |", L, n ? static_cast<double>(tokens) / n : 0.0, ok, n,
                  n ? 100.0 * ok / n : 0.0);
    out += b;
    for (double d : depths)
      for (auto& c : m.cells)
        if (c.length == L && c.depth == d) {
          std::snprintf(b, sizeof b, " %6.0f%%", 100.0 * c.accuracy());
          out += b;
        }
    out += "\n";
  }
  return out;
}

nlohmann::json to_json(const PasskeyReport& r) {
  nlohmann::json models = nlohmann::json::array();
  for (auto& m : r.models) {
    nlohmann::json cells = nlohmann::json::array(), by_length = nlohmann::json::array();
    std::vector<int> seen;
    for (auto& c : m.cells) {
      nlohmann::json trials = nlohmann::json::array();
      for (std::size_t t = 0; t < c.trials.size(); t++) {
        const PasskeyTrial& tr = c.trials[t];
        trials.push_back({{"trial", t},
                          {"key", tr.key},
                          {"fillers", tr.fillers},
                          {"prompt_tokens", tr.prompt_tokens},
                          {"output", sanitize_utf8(tr.output)},  // a byte-level model may write any bytes
                          {"answer", tr.answer ? nlohmann::json(*tr.answer) : nlohmann::json(nullptr)},
                          {"correct", tr.correct},
                          {"seconds", tr.seconds}});
      }
      cells.push_back({{"length", c.length},
                       {"depth", c.depth},
                       {"correct", c.correct()},
                       {"accuracy", c.accuracy()},
                       {"trials", trials}});
      if (std::find(seen.begin(), seen.end(), c.length) == seen.end()) {
        seen.push_back(c.length);
        by_length.push_back({{"length", c.length}, {"accuracy", m.length_accuracy(c.length)}});
      }
    }
    models.push_back({{"model", m.name},
                      {"position", m.position},
                      {"train_length", m.train_length},
                      {"accuracy_by_length", by_length},
                      {"cells", cells}});
  }
  return {{"protocol", r.haystack.empty() ? "passkey (landmark attention)" : "passkey in a text haystack"},
          {"haystack", r.haystack.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.haystack)},
          {"seed", r.seed},
          {"trials", r.trials},
          {"answer_tokens", r.answer_tokens},
          {"models", models}};
}

namespace {
}  // namespace

std::string to_csv(const PasskeyReport& r) {
  std::string out = "model,position,train_length,length,depth,trial,key,prompt_tokens,fillers,answer,correct,output\n";
  for (auto& m : r.models)
    for (auto& c : m.cells)
      for (std::size_t t = 0; t < c.trials.size(); t++) {
        const PasskeyTrial& tr = c.trials[t];
        out += csv_field(m.name) + "," + csv_field(m.position) + "," + std::to_string(m.train_length) + "," +
               std::to_string(c.length) + "," + depth_str(c.depth) + "," + std::to_string(t) + "," +
               std::to_string(tr.key) + "," + std::to_string(tr.prompt_tokens) + "," + std::to_string(tr.fillers) +
               "," + (tr.answer ? std::to_string(*tr.answer) : std::string()) + "," + (tr.correct ? "1" : "0") + "," +
               csv_field(tr.output) + "\n";
      }
  return out;
}

void plot_passkey_png(const PasskeyReport& r, const std::filesystem::path& png) {
  run_gnuplot(png, "`plot`", [&](const std::filesystem::path& out, const std::filesystem::path& dir) {
    const std::size_t M = r.models.size();
    std::string script = "set terminal png size " + std::to_string(std::max<std::size_t>(1, M) * 560) + ",480\n" +
                         "set output " + gnuplot_quote(out.string()) + "\n" +
                         "set cbrange [0:100]\nset palette defined (0 '#b2182b', 50 '#f7f7f7', 100 '#2166ac')\n"
                         "set cblabel 'correct (%)'\nset xlabel 'prompt length (tokens)'\n"
                         "set ylabel 'needle depth'\nunset key\n"
                         "set multiplot layout 1," + std::to_string(std::max<std::size_t>(1, M)) + "\n";
    for (std::size_t i = 0; i < M; i++) {
      const PasskeyModelResult& m = r.models[i];
      std::vector<int> lengths;
      std::vector<double> depths;
      for (auto& c : m.cells) {
        if (std::find(lengths.begin(), lengths.end(), c.length) == lengths.end()) lengths.push_back(c.length);
        if (std::find(depths.begin(), depths.end(), c.depth) == depths.end()) depths.push_back(c.depth);
      }
      // x = length index, y = depth index, value = percent correct (one "x y z" line per cell)
      const std::filesystem::path data = dir / ("m" + std::to_string(i) + ".dat");
      std::ofstream d(data);
      for (std::size_t di = 0; di < depths.size(); di++) {
        for (std::size_t li = 0; li < lengths.size(); li++)
          for (auto& c : m.cells)
            if (c.length == lengths[li] && c.depth == depths[di])
              d << li << " " << di << " " << 100.0 * c.accuracy() << "\n";
        d << "\n";
      }
      std::string xt = "set xtics (", yt = "set ytics (";
      for (std::size_t li = 0; li < lengths.size(); li++)
        xt += (li ? ", " : "") + gnuplot_quote(std::to_string(lengths[li])) + " " + std::to_string(li);
      for (std::size_t di = 0; di < depths.size(); di++)
        yt += (di ? ", " : "") + gnuplot_quote(depth_str(depths[di])) + " " + std::to_string(di);
      script += xt + ")\n" + yt + ")\n";
      char range[96];
      std::snprintf(range, sizeof range, "set xrange [-0.5:%.1f]\nset yrange [-0.5:%.1f]\n", lengths.size() - 0.5,
                    depths.size() - 0.5);
      script += range;
      script += "set title " + gnuplot_quote(m.name + " (" + m.position + ", L=" + std::to_string(m.train_length) +
                                             ")") + " noenhanced\n";
      script += "plot " + gnuplot_quote(data.string()) + " using 1:2:3 with image, " + gnuplot_quote(data.string()) +
                " using 1:2:(sprintf('%.0f', $3)) with labels\n";
    }
    return script + "unset multiplot\n";
  });
}

}  // namespace stretch
