#include "position/extension.hpp"

#include <cmath>
#include <sstream>
#include <vector>

#include "core/error.hpp"
#include "core/json_int.hpp"
#include "core/number_list.hpp"

namespace stretch {

namespace {

int whole(double v, const std::string& flag, const std::string& what) {
  if (v != std::floor(v) || v < 1 || v > (1 << 30))
    throw UsageError(flag + ": the " + what + " must be a whole number >= 1, got " + std::to_string(v));
  return static_cast<int>(v);
}

std::string num(double v) {
  std::ostringstream o;
  o << v;
  return o.str();
}

}  // namespace

double PositionExtension::far_query(double p) const {
  switch (type) {
    case ExtensionType::self_extend: return std::floor(p / group) + window - std::floor(static_cast<double>(window) / group);
    case ExtensionType::rerope: return leaky > 0.0 ? p / leaky + window - window / leaky : window;
    default: return p;
  }
}

double PositionExtension::far_key(double p) const {
  switch (type) {
    case ExtensionType::self_extend: return std::floor(p / group);
    case ExtensionType::rerope: return leaky > 0.0 ? p / leaky : 0.0;
    default: return p;
  }
}

double PositionExtension::relative(double pi, double pj) const {
  if (is_none() || pi - pj < window) return pi - pj;
  return far_query(pi) - far_key(pj);
}

void PositionExtension::validate() const {
  if (type == ExtensionType::none) {
    if (window != 0 || group != 1 || leaky != 0.0)
      throw ConfigError("extension: no type, but window / group / leaky are set");
    return;
  }
  if (window < 1) throw ConfigError("extension: window must be >= 1, got " + std::to_string(window));
  if (type == ExtensionType::self_extend && group < 1)
    throw ConfigError("extension: the self-extend group size must be >= 1, got " + std::to_string(group));
  if (type != ExtensionType::self_extend && group != 1)
    throw ConfigError("extension: group applies to self-extend only");
  if (type == ExtensionType::rerope && leaky != 0.0 && !(std::isfinite(leaky) && leaky > 1.0))
    throw ConfigError("extension: the leaky ReRoPE slope k must be > 1 (0: plain ReRoPE), got " + num(leaky));
  if (type != ExtensionType::rerope && leaky != 0.0) throw ConfigError("extension: leaky applies to rerope only");
}

std::string PositionExtension::to_string() const {
  switch (type) {
    case ExtensionType::self_extend: return "self-extend:" + std::to_string(group) + "," + std::to_string(window);
    case ExtensionType::rerope:
      return "rerope:" + std::to_string(window) + (leaky > 0.0 ? "," + num(leaky) : std::string());
    default: return "none";
  }
}

nlohmann::json PositionExtension::to_json() const {
  switch (type) {
    case ExtensionType::self_extend: return {{"type", "self-extend"}, {"group", group}, {"window", window}};
    case ExtensionType::rerope: {
      nlohmann::json j = {{"type", "rerope"}, {"window", window}};
      if (leaky > 0.0) j["leaky"] = leaky;
      return j;
    }
    default: return {{"type", "none"}};
  }
}

PositionExtension PositionExtension::from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    throw InputError(source + ": expected an object with a \"type\" (self-extend or rerope)");
  PositionExtension e;
  const std::string t = j["type"];
  if (t == "self-extend") e.type = ExtensionType::self_extend;
  else if (t == "rerope") e.type = ExtensionType::rerope;
  else if (t == "none") e.type = ExtensionType::none;
  else throw InputError(source + ": unknown type '" + t + "' (expected self-extend or rerope)");
  auto get_int = [&](const char* key, int& dst) {
    if (!j.contains(key)) return;
    const auto v = json_int_in(j[key]);  // 64 bits, checked, then narrowed: never wrapped into range
    if (!v) throw InputError(source + ": field '" + key + "' must be an integer in int's range, got " + j[key].dump());
    dst = *v;
  };
  get_int("window", e.window);
  get_int("group", e.group);
  if (j.contains("leaky")) {
    if (!j["leaky"].is_number()) throw InputError(source + ": field 'leaky' must be a number");
    e.leaky = j["leaky"].get<double>();
  }
  try {
    e.validate();
  } catch (const ConfigError& err) {
    throw InputError(source + ": " + err.what());
  }
  return e;
}

PositionExtension PositionExtension::parse_self_extend(const std::string& spec, const std::string& flag) {
  const std::string forms = "G,W: the group size G >= 1 and the neighbour window W >= 1, e.g. 4,128";
  const auto v = parse_number_list(spec, flag, forms);
  if (v.size() != 2) throw UsageError(flag + ": expected " + forms + ", got '" + spec + "'");
  PositionExtension e;
  e.type = ExtensionType::self_extend;
  e.group = whole(v[0], flag, "group size G");
  e.window = whole(v[1], flag, "neighbour window W");
  return e;
}

PositionExtension PositionExtension::parse_rerope(const std::string& spec, const std::string& flag) {
  const std::string forms = "W (the window, >= 1) or W,K (leaky ReRoPE with slope 1/K beyond W, K > 1), e.g. 256,16";
  const auto v = parse_number_list(spec, flag, forms);
  if (v.empty() || v.size() > 2) throw UsageError(flag + ": expected " + forms + ", got '" + spec + "'");
  PositionExtension e;
  e.type = ExtensionType::rerope;
  e.window = whole(v[0], flag, "window W");
  if (v.size() == 2) {
    if (!(v[1] > 1.0)) throw UsageError(flag + ": the leaky slope K must be > 1, got " + num(v[1]));
    e.leaky = v[1];
  }
  return e;
}

}  // namespace stretch
