#include "position/position_ids.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <limits>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "core/json_int.hpp"

namespace stretch {
namespace {

constexpr std::array<std::pair<PositionIdsKind, std::string_view>, 5> kNames{{
    {PositionIdsKind::plain, "plain"},
    {PositionIdsKind::shifted, "shifted"},
    {PositionIdsKind::randomized, "randomized"},
    {PositionIdsKind::modulo, "modulo"},
    {PositionIdsKind::repeat, "repeat"},
}};

std::string_view kind_name(PositionIdsKind k) {
  for (auto& [v, n] : kNames)
    if (v == k) return n;
  return "?";
}

bool kind_from_name(std::string_view name, PositionIdsKind& out) {
  for (auto& [v, n] : kNames)
    if (n == name) {
      out = v;
      return true;
    }
  return false;
}

// What param means for each kind, for messages.
const char* param_meaning(PositionIdsKind k) {
  switch (k) {
    case PositionIdsKind::shifted: return "the maximum offset";
    case PositionIdsKind::randomized: return "the size of the position range N";
    case PositionIdsKind::modulo: return "the modulus";
    case PositionIdsKind::repeat: return "the repeat count";
    case PositionIdsKind::plain: break;
  }
  return "nothing";
}

}  // namespace

std::string position_ids_forms() {
  return "plain, shifted:K (K >= 1), randomized:N (N >= 1), modulo:M (M >= 1), repeat:R (R >= 1)";
}

std::string PositionIds::to_string() const {
  if (kind == PositionIdsKind::plain) return "plain";
  return std::string(kind_name(kind)) + ":" + std::to_string(param);
}

nlohmann::json PositionIds::to_json() const {
  nlohmann::json j = {{"kind", std::string(kind_name(kind))}};
  if (kind != PositionIdsKind::plain) j["param"] = param;
  return j;
}

void PositionIds::validate(const std::string& what) const {
  if (kind == PositionIdsKind::plain) {
    if (param != 0) throw ConfigError(what + ": plain position ids take no parameter (expected one of: " +
                                      position_ids_forms() + ")");
    return;
  }
  if (param < 1)
    throw ConfigError(what + ": " + std::string(kind_name(kind)) + " needs " + param_meaning(kind) + " >= 1, got " +
                      std::to_string(param) + " (expected one of: " + position_ids_forms() + ")");
}

PositionIds PositionIds::from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object() || !j.contains("kind") || !j["kind"].is_string())
    throw InputError(source + ": position ids must be an object {\"kind\": ..., \"param\": ...}, got " + j.dump());
  PositionIds s;
  const std::string name = j["kind"].get<std::string>();
  if (!kind_from_name(name, s.kind))
    throw InputError(source + ": unknown position ids kind '" + name + "' (expected one of: " + position_ids_forms() +
                     ")");
  if (j.contains("param")) {
    const auto param = json_int_in(j["param"]);  // 2^64-1 is refused, not read as -1
    if (!param)
      throw InputError(source + ": field 'param' of the position ids must be an integer, got " + j["param"].dump());
    s.param = *param;
  } else if (s.kind != PositionIdsKind::plain) {
    throw InputError(source + ": position ids '" + name + "' need a field 'param'");
  }
  try {
    s.validate(source);
  } catch (const ConfigError& e) {
    throw InputError(e.what());
  }
  return s;
}

PositionIds PositionIds::parse(const std::string& spec, const std::string& flag) {
  auto bad = [&](const std::string& why) {
    throw ConfigError(flag + ": invalid position ids '" + spec + "': " + why + " (expected one of: " +
                      position_ids_forms() + ")");
  };
  const auto colon = spec.find(':');
  const std::string name = spec.substr(0, colon);
  PositionIds s;
  if (!kind_from_name(name, s.kind)) bad("unknown scheme '" + name + "'");
  if (s.kind == PositionIdsKind::plain) {
    if (colon != std::string::npos) bad("plain takes no parameter");
    return s;
  }
  if (colon == std::string::npos) bad(name + " needs a parameter, " + param_meaning(s.kind));
  const std::string num = spec.substr(colon + 1);
  const char* first = num.data();
  const char* last = num.data() + num.size();
  int v = 0;
  const auto [ptr, ec] = std::from_chars(first, last, v);
  if (num.empty() || ec != std::errc() || ptr != last)
    bad("'" + num + "' is not an integer" + (ec == std::errc::result_out_of_range ? " in range" : ""));
  s.param = v;
  if (v < 1) bad(std::string(param_meaning(s.kind)) + " must be >= 1");
  return s;
}

bool PositionIds::needs_rng() const {
  return kind == PositionIdsKind::shifted || kind == PositionIdsKind::randomized;
}

bool operator==(const PositionIds& a, const PositionIds& b) { return a.kind == b.kind && a.param == b.param; }

void fill_position_ids(const PositionIds& s, std::int32_t* pos, int B, int T, Rng& rng, int start) {
  s.validate("position ids");
  if (B < 0 || T < 0 || start < 0)
    throw ConfigError("position ids: invalid shape B=" + std::to_string(B) + " T=" + std::to_string(T) +
                      " start=" + std::to_string(start) + " (expected non-negative values)");
  if (B == 0 || T == 0) return;
  constexpr std::int64_t kMax = std::numeric_limits<std::int32_t>::max();
  const std::int64_t last = static_cast<std::int64_t>(start) + T - 1;  // the last token's index in its document
  auto row = [&](int b) { return pos + static_cast<std::int64_t>(b) * T; };
  switch (s.kind) {
    case PositionIdsKind::plain:
    case PositionIdsKind::shifted: {
      const std::int64_t hi = last + (s.kind == PositionIdsKind::shifted ? s.param : 0);
      if (hi > kMax)
        throw ConfigError("position ids " + s.to_string() + ": position " + std::to_string(hi) +
                          " does not fit in int32 (start " + std::to_string(start) + ", T " + std::to_string(T) + ")");
      for (int b = 0; b < B; b++) {
        const std::int64_t o = s.kind == PositionIdsKind::shifted
                                   ? static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(s.param) + 1))
                                   : 0;
        std::int32_t* p = row(b);
        for (int t = 0; t < T; t++) p[t] = static_cast<std::int32_t>(start + t + o);
      }
      return;
    }
    case PositionIdsKind::modulo:
      for (int b = 0; b < B; b++) {
        std::int32_t* p = row(b);
        for (int t = 0; t < T; t++) p[t] = static_cast<std::int32_t>((static_cast<std::int64_t>(start) + t) % s.param);
      }
      return;
    case PositionIdsKind::repeat:
      for (int b = 0; b < B; b++) {
        std::int32_t* p = row(b);
        for (int t = 0; t < T; t++) p[t] = static_cast<std::int32_t>((static_cast<std::int64_t>(start) + t) / s.param);
      }
      return;
    case PositionIdsKind::randomized: {
      if (T > s.param)
        throw ConfigError("position ids " + s.to_string() + ": cannot draw " + std::to_string(T) +
                          " distinct positions from [0, " + std::to_string(s.param) +
                          ") (the window is longer than N; use randomized:N with N >= " + std::to_string(T) + ")");
      // Floyd's algorithm: a uniform T-subset of [0, N) from T draws, then sorted.
      const std::int64_t N = s.param;
      std::unordered_set<std::int32_t> chosen;
      chosen.reserve(static_cast<std::size_t>(T) * 2);
      std::vector<std::int32_t> ids;
      ids.reserve(static_cast<std::size_t>(T));
      for (std::int64_t j = N - T; j < N; j++) {
        const auto t = static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(j) + 1));
        const std::int32_t pick = chosen.insert(t).second ? t : static_cast<std::int32_t>(j);
        if (pick != t) chosen.insert(pick);
        ids.push_back(pick);
      }
      std::sort(ids.begin(), ids.end());
      for (int b = 0; b < B; b++) std::copy(ids.begin(), ids.end(), row(b));
      return;
    }
  }
}

}  // namespace stretch
