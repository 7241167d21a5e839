// RoPE context-length scalings: the rotation frequencies (and attention factor) to use when a model trained at
// L_train tokens is run at longer lengths. Reference: Hugging Face transformers `modeling_rope_utils.py`
// (linear, dynamic, yarn, llama3, longrope), ggml `rope_yarn` / `ggml_rope_yarn_corr_dims`, Peng et al. (YaRN
// paper). transformers' config.json forms map to these in position/rope_scaling_hf.hpp.
//
// Notation: d = head_dim (even), theta_i = base^(-2i/d) for pair index i = 0 .. d/2-1 (rope_inv_freq),
// s = factor = L_target / L_train >= 1, L = L_train (the length the model was trained at: original_context when
// non-zero, else the model's), T = seq_len (the current sequence length: max position id + 1).
// All formulas are evaluated in double and each inv_freq is rounded to float once.
//
//   none         theta'_i = theta_i; attention factor 1. (factor must be 1.)
//   linear       position interpolation (kaiokendev; Chen et al.): theta'_i = theta_i / s  (== positions / s).
//   ntk          NTK-aware base change: base' = base * s^(d/(d-2)); theta'_i = base'^(-2i/d).
//   dynamic_ntk  HF "dynamic": when T > L: base' = base * (s*T/L - (s-1))^(d/(d-2)),
//                otherwise base' = base (unscaled). Note: as in HF, factor 1 still rescales once T > L
//                (base' = base * (T/L)^(d/(d-2))). (HF keeps the largest T seen so far; ours follows T.)
//   yarn         HF / ggml / llama.cpp variant (beta_fast = 32, beta_slow = 1 by default):
//                  corr_dim(r) = d * ln(L / (r * 2 pi)) / (2 ln base)
//                  truncate (default): low = max(floor(corr_dim(beta_fast)), 0),
//                                      high = min(ceil(corr_dim(beta_slow)), d - 1)
//                  truncate = false:   low = max(corr_dim(beta_fast), 0), high = min(corr_dim(beta_slow), d - 1)
//                  (if high == low, high += 0.001)
//                  ramp_i = clamp((i - low) / (high - low), 0, 1)
//                  theta'_i = (theta_i / s) * ramp_i + theta_i * (1 - ramp_i)
//                so pairs below `low` (high frequency, many rotations within L) keep theta_i (extrapolation;
//                HF's inv_freq_extrapolation_factor = 1 - ramp) and pairs above `high` are divided by s.
//                attention factor, with m(s, k) = 0.1 k ln s + 1 (1 when s <= 1), HF's yarn_get_mscale:
//                  attention_factor if > 0; else m(s, mscale) / m(s, mscale_all_dim) when both are > 0
//                  (DeepSeek's form; equal values give 1); else m(s, 1) = 0.1 ln s + 1.
//   yarn_paper   the paper's continuous ramp over the wavelength ratio, with alpha = beta_slow, beta = beta_fast:
//                  lambda_i = 2 pi / theta_i,  r_i = L / lambda_i,
//                  gamma_i = clamp((r_i - alpha) / (beta - alpha), 0, 1)
//                  theta'_i = (1 - gamma_i) * theta_i / s + gamma_i * theta_i
//                attention factor as for yarn.
//   llama3       Llama 3.1 (HF "llama3"; lo = low_freq_factor, default 1, hi = high_freq_factor, default 4):
//                  lambda_i = 2 pi / theta_i
//                  lambda_i < L / hi:  theta'_i = theta_i                       (high frequencies kept)
//                  lambda_i > L / lo:  theta'_i = theta_i / s                   (low frequencies interpolated)
//                  otherwise:          g = (L / lambda_i - lo) / (hi - lo),
//                                      theta'_i = (1 - g) * theta_i / s + g * theta_i
//                hi == lo is the hard step: lambda_i >= L / lo divided by s, the rest kept. Attention factor 1.
//   longrope     Phi-3 / LongRoPE (HF "longrope"): per-pair rescale factors, short_factor and long_factor, d/2
//                numbers each, chosen by the current length:
//                  e = long_factor when T > L, else short_factor;  theta'_i = theta_i / e_i
//                attention factor: attention_factor if > 0, else sqrt(1 + ln s / ln L) (1 when s <= 1). The
//                factor s enters only there.
// dynamic_ntk and longrope depend on T (depends_on_length()): their tables must be recomputed for the current
// length; the others ignore seq_len.
//
// The attention factor multiplies cos and sin (ggml's mscale), so the q.k scores scale by its square.
//
// Spec strings (the --rope-scaling flag; to_string() writes the same form and round-trips through parse):
//   none | linear:S | ntk:S | dynamic-ntk:S | yarn:S | yarn-paper:S | llama3:S | longrope:S
//   each optionally followed by ",orig=L" (L_train), and by comma-separated key=value pairs:
//     yarn, yarn-paper   beta_fast=B, beta_slow=B, attention_factor=A, mscale=M, mscale_all_dim=M (together)
//     yarn               truncate=0 | 1 (default 1)
//     llama3             low=LO, high=HI (low_freq_factor, high_freq_factor; defaults 1 and 4)
//     longrope           short=LIST, long=LIST (both required), attention_factor=A
//   LIST is either the numbers separated by colons ("1:1.02:1.5") or "@PATH", a JSON file holding an array of
//   numbers (to_string() always writes the colon form). Underscores are accepted in the type names (dynamic_ntk,
//   yarn_paper). Example: "llama3:8,orig=8192,low=1,high=4", "yarn:4,mscale=0.707,mscale_all_dim=0.707,truncate=0",
//   "longrope:32,orig=4096,short=@short.json,long=@long.json".
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace stretch {

enum class RopeScalingType { none, linear, ntk, dynamic_ntk, yarn, yarn_paper, llama3, longrope };

// "none", "linear", "ntk", "dynamic-ntk", "yarn", "yarn-paper", "llama3", "longrope" (the spellings parse() and
// to_json() use).
std::string rope_scaling_type_name(RopeScalingType t);

struct RopeScaling {
  RopeScalingType type = RopeScalingType::none;
  double factor = 1.0;                        // s = L_target / L_train, >= 1
  int original_context = 0;                   // L_train; 0 means "the model's trained length" (filled by the caller)
  double beta_fast = 32.0, beta_slow = 1.0;   // yarn (HF names); for yarn_paper these are beta and alpha
  double attention_factor = 0.0;              // yarn / yarn-paper / longrope; 0 = the type's default (above)
  double mscale = 0.0, mscale_all_dim = 0.0;  // yarn / yarn-paper attention factor; 0 = unset (set both or none)
  bool truncate = true;                       // yarn: floor / ceil the correction range (false: HF truncate=false)
  double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
  std::vector<double> short_factor, long_factor;         // longrope, d/2 each (checked in rope_tables)

  bool is_none() const { return type == RopeScalingType::none; }
  // True for dynamic-ntk and longrope: their tables depend on the current sequence length, so callers recompute
  // them (rope_tables with seq_len = max position id + 1) when the length changes.
  bool depends_on_length() const;
  // Throws ConfigError naming the field when the values are inconsistent: factor < 1 or not finite, none with
  // factor != 1, negative original_context, beta_fast <= beta_slow or beta_slow <= 0, negative or non-finite
  // attention_factor / mscale / mscale_all_dim, only one of mscale and mscale_all_dim, attention_factor together
  // with mscale, low_freq_factor <= 0 or high_freq_factor < low_freq_factor, longrope without short_factor /
  // long_factor, of different lengths or with a factor <= 0; and any of these fields changed from its default on a
  // type that does not use it.
  void validate() const;
  // e.g. "yarn:4", "none", "linear:2,orig=512"; only non-default fields are written (llama3's low / high and
  // longrope's lists always). Round-trips through parse.
  std::string to_string() const;
  // {"type": "yarn", "factor": 4, "original_context": 512, "beta_fast": 32, "beta_slow": 1}
  // (betas only for yarn / yarn-paper; "attention_factor", "mscale", "mscale_all_dim" only when non-zero;
  // "truncate" only when false; "low_freq_factor" and "high_freq_factor" for llama3; "short_factor" and
  // "long_factor" (arrays) for longrope).
  nlohmann::json to_json() const;
  // Missing fields take their defaults; throws InputError naming `source` and the field.
  static RopeScaling from_json(const nlohmann::json& j, const std::string& source);
  // Parses the spec forms above; throws ConfigError naming `flag` and listing the valid forms (InputError naming
  // `flag` and the path when an @PATH list cannot be read).
  static RopeScaling parse(const std::string& spec, const std::string& flag);

  friend bool operator==(const RopeScaling&, const RopeScaling&) = default;
};

struct RopeTables {
  std::vector<float> inv_freq;    // d/2 rotation frequencies to use (computed in double, rounded once)
  double attention_factor = 1.0;  // multiply cos and sin by this (q.k scores scale by its square)
};

// head_dim even > 0, base > 0, L_train > 0 (the model's trained length, used when s.original_context == 0;
// a non-zero s.original_context overrides it); seq_len = current sequence length >= 0 (only dynamic_ntk and
// longrope use it). ntk and dynamic_ntk need head_dim > 2; longrope needs short_factor and long_factor of
// head_dim / 2 numbers each. Throws ConfigError otherwise (naming short_factor / long_factor and the length).
RopeTables rope_tables(const RopeScaling& s, int head_dim, double base, int L_train, int seq_len);

// The per-pair divisors theta_i / theta'_i (d/2 numbers, in double, before any rounding) of the same table:
// what llama.cpp's rope_freqs tensor holds (ggml divides each pair's angle by it). s for linear; 1, s or the ramp
// in between for yarn and llama3; e_i for longrope. Same arguments and errors as rope_tables.
std::vector<double> rope_freq_divisors(const RopeScaling& s, int head_dim, double base, int L_train, int seq_len);

}  // namespace stretch
