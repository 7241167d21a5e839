#include "cli/context_flags.hpp"

#include <CLI/CLI.hpp>
#include <sstream>

#include "core/error.hpp"

namespace stretch::cli {

void add_context_flags(CLI::App& app, ContextFlags& f) {
  app.add_option("--rope-scaling", f.rope_scaling,
                 "RoPE scaling: none | linear:S | ntk:S | dynamic-ntk:S | yarn:S | yarn-paper:S | llama3:S | "
                 "longrope:S (S = target / trained length), then ,key=value: orig=L (trained length); yarn: "
                 "beta_fast=B, beta_slow=B, attention_factor=A, mscale=M,mscale_all_dim=M, truncate=0|1; llama3: "
                 "low=LO, high=HI (default 1, 4); longrope: short=LIST, long=LIST (head_dim/2 numbers as "
                 "x:y:... or @file.json), attention_factor=A. E.g. llama3:8,orig=8192,low=1,high=4 "
                 "(position/rope_scaling.hpp)");
  app.add_option("--attn-window", f.attn_window, "Sliding-window attention: each query sees its N latest keys (0: all)");
  app.add_option("--logn", f.logn, "Log-n attention scaling: off | full | beyond (position/logn.hpp)");
  app.add_option("--positions", f.positions,
                 "Position ids: plain | shifted:MAX | randomized:NMAX | modulo:M | repeat:R (position/position_ids.hpp)");
}

void add_extension_flags(CLI::App& app, ContextFlags& f) {
  app.add_option("--self-extend", f.self_extend,
                 "Self-Extend (rope, alibi, t5; no fine-tuning): G,W = group size, neighbour window, e.g. 4,128; "
                 "distances past W use positions floor(p/G) shifted by W - W/G (position/extension.hpp)");
  app.add_option("--rerope", f.rerope,
                 "ReRoPE (rope, alibi, t5): W clamps relative positions at W; W,K (K > 1) is leaky ReRoPE, slope 1/K "
                 "past W");
  app.add_option("--alibi-interp", f.alibi_interp,
                 "ALiBi interpolation (alibi models): slopes x trained length / L for a target length L >= the "
                 "trained one, or auto: each evaluation length (generate: --ctx)");
}

std::string describe_context(const ModelConfig& c, const ContextFlags& f) {
  std::string d(to_string(c.position));
  if (!c.rope_scaling.is_none()) d += " " + c.rope_scaling.to_string();
  if (!c.extension.is_none()) d += " " + c.extension.to_string();
  if (f.alibi_interp_auto() && c.position == PositionMethod::alibi) d += " alibi-interp:auto";
  else if (c.alibi_interp > 0) d += " alibi-interp:" + std::to_string(c.alibi_interp);
  if (c.attn_window > 0) d += " window:" + std::to_string(c.attn_window);
  return d;
}

void override_context(const ContextFlags& f, ModelConfig& c, const std::string& source) {
  apply_context_flags(f, c);
  try {
    c.validate();
  } catch (const ConfigError& e) {
    throw UsageError(source + ": " + e.what());
  }
}

std::vector<int> parse_lengths(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::size_t used = 0;
    long v = 0;
    try {
      v = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || item.empty())
      throw UsageError("--lengths: '" + item + "' is not an integer (expected a list like 256,512,1024)");
    if (v < 1 || v > (1L << 22))
      throw UsageError("--lengths: " + item + " is out of range (expected lengths in [1, 4194304])");
    out.push_back(static_cast<int>(v));
  }
  if (out.empty()) throw UsageError("--lengths: expected a list like 256,512,1024");
  return out;
}

int parse_up_to(const std::string& s) {
  std::string n = s;
  if (!n.empty() && (n.back() == 'x' || n.back() == 'X')) n.pop_back();
  std::size_t used = 0;
  long v = 0;
  try {
    v = std::stol(n, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (n.empty() || used != n.size() || v < 1 || v > 4096)
    throw UsageError("--up-to: expected a multiple of the training length like 16x, got '" + s + "'");
  return static_cast<int>(v);
}

std::vector<int> up_to_lengths(int train_length, int up_to) {
  std::vector<int> out;
  for (int m = 1; m <= up_to; m *= 2) out.push_back(train_length * m);
  return out;
}

std::string unescape(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      const char c = s[++i];
      out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
    } else {
      out += s[i];
    }
  }
  return out;
}

void apply_context_flags(const ContextFlags& f, ModelConfig& c) {
  try {
    if (!f.rope_scaling.empty()) {
      RopeScaling s = RopeScaling::parse(f.rope_scaling, "--rope-scaling");
      if (s.original_context == 0) s.original_context = c.rope_train_length();
      c.rope_scaling = s;
    }
    if (f.attn_window >= 0) c.attn_window = f.attn_window;
    if (f.attn_window < -1) throw UsageError("--attn-window: expected an integer >= 0");
    if (!f.logn.empty()) c.logn = parse_logn_mode(f.logn, "--logn");
    if (!f.positions.empty()) c.position_ids = PositionIds::parse(f.positions, "--positions");
  } catch (const ConfigError& e) {
    throw UsageError(e.what());
  }
  if (!f.self_extend.empty() && !f.rerope.empty())
    throw UsageError("--self-extend and --rerope: give one (each replaces the far positions of the other)");
  for (const auto& [flag, spec] : {std::pair<std::string, std::string>{"--self-extend", f.self_extend},
                                   std::pair<std::string, std::string>{"--rerope", f.rerope}}) {
    if (spec.empty()) continue;
    const PositionExtension e = flag == "--self-extend" ? PositionExtension::parse_self_extend(spec, flag)
                                                        : PositionExtension::parse_rerope(spec, flag);
    if (!ModelConfig::extendable(c.position))
      throw UsageError(flag + ": applies to rope, alibi and t5 models (relative positions); this one uses " +
                       std::string(to_string(c.position)) + " positions");
    if (e.window >= c.extension_train_length())
      throw UsageError(flag + ": the window " + std::to_string(e.window) + " must be smaller than the trained length " +
                       std::to_string(c.extension_train_length()) + " (relative positions from it on were never "
                       "trained; a window covering the sequence is the plain method)");
    c.extension = e;
  }
  if (!f.alibi_interp.empty()) {
    if (c.position != PositionMethod::alibi)
      throw UsageError("--alibi-interp: applies to alibi models; this one uses " +
                       std::string(to_string(c.position)) + " positions");
    if (f.alibi_interp_auto()) {
      c.alibi_interp = 0;  // set per length by the command
    } else {
      std::size_t used = 0;
      long v = 0;
      try {
        v = std::stol(f.alibi_interp, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != f.alibi_interp.size() || v < c.block_size || v > (1L << 30))
        throw UsageError("--alibi-interp: expected auto or a target length >= the trained length " +
                         std::to_string(c.block_size) + ", got '" + f.alibi_interp + "'");
      c.alibi_interp = static_cast<int>(v);
    }
  }
}

}  // namespace stretch::cli
