// RoPE context-length scalings: the rotation frequencies (and attention factor) to use when a model trained at
// L_train tokens is run at longer lengths. Reference: Hugging Face transformers `modeling_rope_utils.py`
// (linear, dynamic, yarn), ggml `rope_yarn` / `ggml_rope_yarn_corr_dims`, Peng et al. (YaRN paper).
//
// Notation: d = head_dim (even), theta_i = base^(-2i/d) for pair index i = 0 .. d/2-1 (rope_inv_freq),
// s = factor = L_target / L_train >= 1, L = L_train (the length the model was trained at).
// All formulas are evaluated in double and each inv_freq is rounded to float once.
//
//   none         theta'_i = theta_i; attention factor 1. (factor must be 1.)
//   linear       position interpolation (kaiokendev; Chen et al.): theta'_i = theta_i / s  (== positions / s).
//   ntk          NTK-aware base change: base' = base * s^(d/(d-2)); theta'_i = base'^(-2i/d).
//   dynamic_ntk  HF "dynamic": with T = seq_len, when T > L: base' = base * (s*T/L - (s-1))^(d/(d-2)),
//                otherwise base' = base (unscaled). Note: as in HF, factor 1 still rescales once T > L
//                (base' = base * (T/L)^(d/(d-2))).
//   yarn         HF / ggml / llama.cpp variant (beta_fast = 32, beta_slow = 1 by default):
//                  corr_dim(r) = d * ln(L / (r * 2 pi)) / (2 ln base)
//                  low  = max(floor(corr_dim(beta_fast)), 0),  high = min(ceil(corr_dim(beta_slow)), d - 1)
//                  (if high == low, high += 0.001)
//                  ramp_i = clamp((i - low) / (high - low), 0, 1)
//                  theta'_i = (theta_i / s) * ramp_i + theta_i * (1 - ramp_i)
//                so pairs below `low` (high frequency, many rotations within L) keep theta_i (extrapolation;
//                HF's inv_freq_extrapolation_factor = 1 - ramp) and pairs above `high` are divided by s.
//                attention factor = attention_factor if > 0, else 0.1 ln s + 1 (1 when s <= 1).
//   yarn_paper   the paper's continuous ramp over the wavelength ratio, with alpha = beta_slow, beta = beta_fast:
//                  lambda_i = 2 pi / theta_i,  r_i = L / lambda_i,
//                  gamma_i = clamp((r_i - alpha) / (beta - alpha), 0, 1)
//                  theta'_i = (1 - gamma_i) * theta_i / s + gamma_i * theta_i
//                attention factor as for yarn.
//
// The attention factor multiplies cos and sin (ggml's mscale), so the q.k scores scale by its square.
//
// Spec strings (the --rope-scaling flag; to_string() writes the same form and round-trips through parse):
//   none | linear:S | ntk:S | dynamic-ntk:S | yarn:S | yarn-paper:S
//   optionally followed by ",orig=L" (L_train), and for yarn / yarn-paper ",beta_fast=B,beta_slow=B" and
//   ",attention_factor=A". Underscores are accepted in the type names (dynamic_ntk, yarn_paper).
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace stretch {

enum class RopeScalingType { none, linear, ntk, dynamic_ntk, yarn, yarn_paper };

// "none", "linear", "ntk", "dynamic-ntk", "yarn", "yarn-paper" (the spellings parse() and to_json() use).
std::string rope_scaling_type_name(RopeScalingType t);

struct RopeScaling {
  RopeScalingType type = RopeScalingType::none;
  double factor = 1.0;                        // s = L_target / L_train, >= 1
  int original_context = 0;                   // L_train; 0 means "the model's trained length" (filled by the caller)
  double beta_fast = 32.0, beta_slow = 1.0;   // yarn (HF names); for yarn_paper these are beta and alpha
  double attention_factor = 0.0;              // yarn mscale; 0 = default 0.1 ln(s) + 1 (1 when s <= 1)

  bool is_none() const { return type == RopeScalingType::none; }
  // Throws ConfigError when the values are inconsistent (factor < 1 or not finite, none with factor != 1,
  // negative original_context, beta_fast <= beta_slow or beta_slow <= 0, negative attention_factor,
  // attention_factor or betas changed on a non-yarn type).
  void validate() const;
  // e.g. "yarn:4", "none", "linear:2,orig=512"; only non-default fields are written. Round-trips through parse.
  std::string to_string() const;
  // {"type": "yarn", "factor": 4, "original_context": 512, "beta_fast": 32, "beta_slow": 1}
  // (betas only for yarn / yarn-paper; "attention_factor" only when non-zero).
  nlohmann::json to_json() const;
  // Missing fields take their defaults; throws InputError naming `source` and the field.
  static RopeScaling from_json(const nlohmann::json& j, const std::string& source);
  // Parses the spec forms above; throws ConfigError naming `flag` and listing the valid forms.
  static RopeScaling parse(const std::string& spec, const std::string& flag);

  friend bool operator==(const RopeScaling&, const RopeScaling&) = default;
};

struct RopeTables {
  std::vector<float> inv_freq;    // d/2 rotation frequencies to use (computed in double, rounded once)
  double attention_factor = 1.0;  // multiply cos and sin by this (q.k scores scale by its square)
};

// head_dim even > 0, base > 0, L_train > 0 (the model's trained length, used when s.original_context == 0;
// a non-zero s.original_context overrides it); seq_len = current sequence length >= 0 (only dynamic_ntk uses
// it). ntk and dynamic_ntk need head_dim > 2. Throws ConfigError otherwise.
RopeTables rope_tables(const RopeScaling& s, int head_dim, double base, int L_train, int seq_len);

}  // namespace stretch
