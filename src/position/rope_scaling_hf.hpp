// Hugging Face transformers' RoPE settings in config.json <-> RopeBase + RopeScaling (position/rope_scaling.hpp).
// Semantics are those of transformers 5 (modeling_rope_utils.py: RotaryEmbeddingConfigMixin.standardize_rope_params,
// ROPE_INIT_FUNCTIONS and dynamic_rope_update), which also reads the 4.x forms.
//
// Where the settings are read from (first match wins):
//   the dict D = config["rope_scaling"] when it is a non-empty object (4.x form), else config["rope_parameters"]
//   (5.x form), else {} (plain RoPE). A D whose values are objects (per-layer-type rope_parameters, e.g.
//   {"full_attention": {...}, "sliding_attention": {...}}) is refused.
//   type  = D["rope_type"], else D["type"] (older), else "default" (both given and different: refused)
//   base  = D["rope_theta"], else config["rope_theta"], else 10000 (transformers' default_theta; an architecture
//           with another default must put it into `config` first)
//   L_orig (yarn, llama3, longrope) = config["original_max_position_embeddings"] when present (Phi-3 stores it at
//           the top level; transformers' rope init re-standardizes and lets it override D's own), else
//           D["original_max_position_embeddings"], else max_position_embeddings
//   partial_rotary_factor (config's or D's) must be 1 (or absent): partial rotary embeddings are not supported.
//
// Mapping per type (s = factor; M = max_position_embeddings; keys other than those listed are refused):
//   default       -> none
//   linear        -> linear:s                          (factor required)
//   proportional  -> linear:s (factor default 1)       (what transformers computes at partial_rotary_factor 1)
//   dynamic       -> dynamic-ntk:s, L = M              (factor required; transformers' dynamic uses M)
//   yarn          -> yarn:s, L = L_orig                (factor required; null: s = M / L_orig)
//                    beta_fast / beta_slow (null or 0: 32 / 1, as transformers' `or`), attention_factor (null:
//                    default; else > 0), mscale + mscale_all_dim (used only when both are non-zero and no
//                    attention_factor, else dropped as transformers ignores them), truncate (true / false; null
//                    counts as false, as transformers' `if truncate:`)
//   llama3        -> llama3:s, L = L_orig              (factor, low_freq_factor, high_freq_factor required)
//   longrope      -> longrope:s, L = L_orig            (short_factor, long_factor required, head_dim / 2 numbers
//                    each; factor absent or null: s = M / L_orig; s < 1 is taken as 1: both give attention 1;
//                    attention_factor null: default, else > 0)
//   anything else (axial, mrope, su, ...): refused.
// RopeScaling.original_context = L when L != M, else 0: the importer's model keeps block_size = M, so
// rope_tables(scaling, head_dim, base, M, T) gives transformers' inv_freq and attention scaling at length T
// (T = max position id + 1, what dynamic_rope_update passes). transformers' dynamic keeps the largest length seen
// so far; ours follows T.
//
// Export (rope_to_hf_config) writes the 4.x form, which transformers 4.43+ and 5.x read:
//   config["rope_theta"] = base, config["rope_scaling"] = null (none) or
//   {"type": T, "rope_type": T, "factor": s, ...the type's keys above...}, with
//   "original_max_position_embeddings": L for yarn, llama3 and longrope, also written at the top level (so a
//   Phi-3 config, whose class default is 4096, reads the same L); config["rope_parameters"] is removed (it would
//   otherwise win over a null rope_scaling). yarn writes beta_fast, beta_slow, and attention_factor, mscale,
//   mscale_all_dim when set, "truncate": false when false.
//   ntk has no transformers type: it is written as rope_theta = base * s^(d/(d-2)) with no scaling (identical
//   frequencies). Refused (ConfigError naming the type): yarn-paper; dynamic-ntk whose L differs from M.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "position/rope_scaling.hpp"

namespace stretch {

struct HfRope {
  double base = 10000.0;  // rope_theta
  RopeScaling scaling;
};

// `config` is the whole config.json object; max_position_embeddings and head_dim as transformers derives them
// (head_dim = config.head_dim or hidden_size / num_attention_heads). InputError naming `source` and the key for
// anything unknown or inconsistent (unknown rope_type or key, partial_rotary_factor != 1, a missing factor, wrong
// list lengths, nested per-layer-type rope_parameters, a value of the wrong kind).
HfRope rope_from_hf_config(const nlohmann::json& config, int max_position_embeddings, int head_dim,
                           const std::string& source);

// The inverse: writes "rope_theta" and "rope_scaling" (and "original_max_position_embeddings" for the types that
// use it) into `config` (an object, or null made an object). head_dim is needed by ntk (the changed base) and
// longrope (the list lengths). ConfigError naming the type for what transformers cannot express.
void rope_to_hf_config(double base, const RopeScaling& s, int max_position_embeddings, int head_dim,
                       nlohmann::json& config);

}  // namespace stretch
