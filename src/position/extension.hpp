// Fine-tuning-free context extension of RoPE models at evaluation and generation time: two score sets per
// (query, key) pair, chosen by distance. Near pairs (i - j < w) use RoPE at the true positions; far pairs use q and
// k rotated at remapped positions, so a far distance never leaves the range the model was trained on.
//
//   self-extend (Jin et al. 2024, "LLM Maybe LongLM", arXiv 2401.01325), neighbour window w = w_n, group size G:
//       far query position  fq(p) = floor(p / G) + w - floor(w / G)
//       far key position    fk(p) = floor(p / G)
//     so a far pair's relative position is floor(i / G) - floor(j / G) + w - floor(w / G) (the paper's grouped
//     attention, shifted so that the grouped distances continue from the neighbour window; with G | w the
//     first far distance is exactly w). Reach: every relative position stays below L_train for sequences of up
//     to (L_train - w + floor(w / G)) G tokens ((L_train - w) G + w when G divides w, the paper's figure).
//   rerope (Su 2023, "ReRoPE"), window w: fq(p) = w, fk(p) = 0, i.e. the relative position min(i - j, w)
//   leaky rerope, window w and k > 1: fq(p) = p / k + w - w / k, fk(p) = p / k (fractional), i.e. the relative
//       position i - j inside the window and w + (i - j - w) / k beyond it (slope 1/k)
//
// Near and far are decided on the distance of the pair's indices i - j (like the causal mask and --attn-window;
// with plain position ids, as in evaluation and generation, that is the position distance) and the remapped
// positions are functions of the position ids. A window that covers the sequence (w >= T) leaves every pair
// near: plain RoPE (tested). G = 1 makes Self-Extend plain RoPE too.
//
// The attention kernel merges the two sets per score (kernels/attention_tiled.hpp, FarScores), never storing a
// T x T tensor; the decoder caches keys unrotated and rotates them per query at the near and far positions
// (model/decoder.hpp). These are inference-time settings: a training forward with one of them is refused.
//
// ALiBi and T5 (bias methods; Self-Extend and ReRoPE were written for RoPE, and carry over because these biases are
// functions of the relative position alone): the bias of a pair is the method's bias at distance(pi, pj), the
// relative position above, with near and far decided on the position distance pi - pj (the same as the index
// distance with the plain position ids of evaluation and generation). So ALiBi adds -m_h * distance, T5 looks up
// the bucket of floor(distance). No second score set is needed (model/block.hpp, ExtendedBias).
//
// Textual forms (flags): --self-extend G,W (e.g. 4,128) and --rerope W or --rerope W,K (leaky, K > 1).
// JSON (config): {"type": "self-extend", "group": 4, "window": 128}, {"type": "rerope", "window": 256,
// "leaky": 16} ("leaky" only when set).
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace stretch {

enum class ExtensionType { none, self_extend, rerope };

struct PositionExtension {
  ExtensionType type = ExtensionType::none;
  int window = 0;      // self-extend: the neighbour window w_n; rerope: w
  int group = 1;       // self-extend: the group size G
  double leaky = 0.0;  // rerope: k > 1 for leaky ReRoPE (slope 1/k beyond w); 0: plain ReRoPE (the clamp)

  bool is_none() const { return type == ExtensionType::none; }
  // Remapped positions of far pairs (formulas above).
  double far_query(double p) const;
  double far_key(double p) const;
  // The relative position the model sees for a pair at positions (pi, pj), pi - pj >= 0 (near or far).
  double relative(double pi, double pj) const;
  // The same for integer positions, as the bias methods need it once per score: integer arithmetic for Self-Extend
  // (floor division) and plain ReRoPE; pi - pj when the type is none or the pair is near. Equals relative().
  double distance(int pi, int pj) const {
    const int d = pi - pj;
    if (type == ExtensionType::none || d < window) return d;
    if (type == ExtensionType::self_extend)
      return floor_div(pi, group) - floor_div(pj, group) + window - floor_div(window, group);
    return leaky > 0.0 ? window + (d - window) / leaky : window;
  }
  // ConfigError naming the field: window < 1, group < 1, leaky in (0, 1] or not finite, and fields set on a type
  // that does not use them.
  void validate() const;
  // "self-extend:4,128", "rerope:256", "rerope:256,16", "none"
  std::string to_string() const;
  nlohmann::json to_json() const;
  // InputError naming `source` for a malformed object.
  static PositionExtension from_json(const nlohmann::json& j, const std::string& source);
  // --self-extend G,W and --rerope W[,K]: UsageError naming `flag` for anything else (a group size or window
  // below 1, a leaky slope k <= 1).
  static PositionExtension parse_self_extend(const std::string& spec, const std::string& flag);
  static PositionExtension parse_rerope(const std::string& spec, const std::string& flag);

  friend bool operator==(const PositionExtension&, const PositionExtension&) = default;

 private:
  static int floor_div(int a, int b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }
};

}  // namespace stretch
