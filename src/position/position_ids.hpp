// Position-id schemes: which position id each token of a training (or evaluation) window gets. The ids feed every
// position method through `pos` (B, T) int32 (docs/ARCHITECTURE.md, "Positions are data"); the attention masks
// never see them (they work on indices).
//
// For a window of T tokens whose first token is token `start` of its document (t = 0 .. T-1, b = 0 .. B-1):
//   plain        pos[b,t] = start + t
//   shifted:K    pos[b,t] = start + t + o_b,  o_b uniform in [0, K], one offset per batch row     (K >= 1)
//                (random shift / offset training: the model sees positions beyond T during training)
//   randomized:N pos[b,t] = i_t, {i_0 < ... < i_{T-1}} a uniformly random T-subset of [0, N), one subset per call
//                shared by all rows (Ruoss et al. 2023: "we subsample the extended positions only once per batch");
//                requires T <= N; `start` is ignored                                            (N >= 1)
//   modulo:m     pos[b,t] = (start + t) mod m                                                    (m >= 1)
//   repeat:r     pos[b,t] = (start + t) / r  (integer division: each position repeated r times; kaiokendev's
//                block-repeat, the discrete counterpart of position interpolation by 1/r)         (r >= 1)
//
// Randomness: shifted draws B numbers from the Rng (row order), randomized draws T numbers (Floyd's algorithm,
// O(T) draws and O(T log T) time whatever N is); plain, modulo and repeat draw nothing. The same Rng state gives
// the same ids.
//
// Textual form (flags, logs): "plain", "shifted:1024", "randomized:2048", "modulo:512", "repeat:4".
// JSON form (checkpoint options): {"kind": "randomized", "param": 2048}; "param" is omitted for plain.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/rng.hpp"

namespace stretch {

enum class PositionIdsKind { plain, shifted, randomized, modulo, repeat };

struct PositionIds {
  PositionIdsKind kind = PositionIdsKind::plain;
  int param = 0;  // shifted: max offset K; randomized: N_max; modulo: m; repeat: r; plain: 0 (see the top)

  // "plain", "shifted:1024", "randomized:2048", "modulo:512", "repeat:4" (parse(to_string()) gives back *this).
  std::string to_string() const;
  nlohmann::json to_json() const;
  // Throws InputError naming `source` (a file and field) when the object is malformed.
  static PositionIds from_json(const nlohmann::json& j, const std::string& source);
  // Parses the textual form; throws ConfigError naming `flag` and listing the valid forms.
  static PositionIds parse(const std::string& spec, const std::string& flag);
  // True for the schemes that draw random numbers (shifted, randomized).
  bool needs_rng() const;
  // Throws ConfigError naming `what` when param is outside the range of its kind (parse and from_json call it).
  void validate(const std::string& what) const;
};

bool operator==(const PositionIds& a, const PositionIds& b);

// The valid textual forms, for error and help messages.
std::string position_ids_forms();

// Fills pos (B, T), row-major, with the ids of scheme s (formulas at the top). start >= 0 offsets plain, shifted,
// modulo and repeat. Throws ConfigError for negative B, T or start, for randomized with T > N, and when an id would
// not fit in int32.
void fill_position_ids(const PositionIds& s, std::int32_t* pos, int B, int T, Rng& rng, int start = 0);

}  // namespace stretch
