#include "position/rope_scaling.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <numbers>
#include <string_view>
#include <system_error>
#include <utility>

#include "core/error.hpp"

namespace stretch {

namespace {

constexpr std::array<std::pair<RopeScalingType, std::string_view>, 6> kNames{{
    {RopeScalingType::none, "none"},
    {RopeScalingType::linear, "linear"},
    {RopeScalingType::ntk, "ntk"},
    {RopeScalingType::dynamic_ntk, "dynamic-ntk"},
    {RopeScalingType::yarn, "yarn"},
    {RopeScalingType::yarn_paper, "yarn-paper"},
}};

constexpr const char* kForms =
    "none, linear:S, ntk:S, dynamic-ntk:S, yarn:S, yarn-paper:S with S >= 1, optionally followed by ,orig=L "
    "and for yarn / yarn-paper ,beta_fast=B,beta_slow=B,attention_factor=A";

bool is_yarn(RopeScalingType t) { return t == RopeScalingType::yarn || t == RopeScalingType::yarn_paper; }

// Accepts the hyphen and underscore spellings ("dynamic-ntk", "dynamic_ntk").
bool lookup_type(std::string_view name, RopeScalingType& out) {
  std::string n(name);
  std::replace(n.begin(), n.end(), '_', '-');
  for (auto& [v, s] : kNames)
    if (s == n) {
      out = v;
      return true;
    }
  return false;
}

// Shortest text that reads back as the same double ("4", "2.5", "1e+30").
std::string fmt(double x) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, r.ptr);
}

bool read_double(std::string_view s, double& out) {
  if (s.empty()) return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && std::isfinite(out);
}

bool read_int(std::string_view s, int& out) {
  if (s.empty()) return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

}  // namespace

std::string rope_scaling_type_name(RopeScalingType t) {
  for (auto& [v, s] : kNames)
    if (v == t) return std::string(s);
  return "?";
}

void RopeScaling::validate() const {
  const std::string what = "rope scaling " + rope_scaling_type_name(type) + ": ";
  if (!std::isfinite(factor) || factor < 1.0)
    throw ConfigError(what + "the factor must be a finite number >= 1 (got " + fmt(factor) + ")");
  if (type == RopeScalingType::none && factor != 1.0)
    throw ConfigError(what + "factor " + fmt(factor) + " given with no scaling type (use linear, ntk, ...)");
  if (original_context < 0)
    throw ConfigError(what + "original_context must be >= 0 (got " + std::to_string(original_context) + ")");
  if (!std::isfinite(attention_factor) || attention_factor < 0.0)
    throw ConfigError(what + "attention_factor must be >= 0 (got " + fmt(attention_factor) + ")");
  if (is_yarn(type)) {
    if (!std::isfinite(beta_fast) || !std::isfinite(beta_slow) || !(beta_slow > 0.0) || !(beta_fast > beta_slow))
      throw ConfigError(what + "need beta_fast > beta_slow > 0 (got beta_fast " + fmt(beta_fast) + ", beta_slow " +
                        fmt(beta_slow) + ")");
  } else {
    const RopeScaling d;
    if (beta_fast != d.beta_fast || beta_slow != d.beta_slow || attention_factor != d.attention_factor)
      throw ConfigError(what + "beta_fast, beta_slow and attention_factor apply only to yarn and yarn-paper");
  }
}

std::string RopeScaling::to_string() const {
  if (type == RopeScalingType::none) return "none";
  std::string s = rope_scaling_type_name(type) + ":" + fmt(factor);
  const RopeScaling d;
  if (original_context != 0) s += ",orig=" + std::to_string(original_context);
  if (beta_fast != d.beta_fast) s += ",beta_fast=" + fmt(beta_fast);
  if (beta_slow != d.beta_slow) s += ",beta_slow=" + fmt(beta_slow);
  if (attention_factor != d.attention_factor) s += ",attention_factor=" + fmt(attention_factor);
  return s;
}

nlohmann::json RopeScaling::to_json() const {
  nlohmann::json j;
  j["type"] = rope_scaling_type_name(type);
  j["factor"] = factor;
  j["original_context"] = original_context;
  if (is_yarn(type)) {
    j["beta_fast"] = beta_fast;
    j["beta_slow"] = beta_slow;
  }
  if (attention_factor != 0.0) j["attention_factor"] = attention_factor;
  return j;
}

RopeScaling RopeScaling::from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) throw InputError(source + ": rope_scaling must be an object (got " + j.dump() + ")");
  RopeScaling r;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const nlohmann::json& v = it.value();
    const std::string field = source + ": rope_scaling." + key;
    if (key == "type") {
      if (!v.is_string() || !lookup_type(v.get<std::string>(), r.type))
        throw InputError(field + ": expected one of none, linear, ntk, dynamic-ntk, yarn, yarn-paper (got " +
                         v.dump() + ")");
    } else if (key == "original_context") {
      if (!v.is_number_integer() || v.get<long long>() < 0 || v.get<long long>() > 1000000000)
        throw InputError(field + ": expected a non-negative integer (got " + v.dump() + ")");
      r.original_context = v.get<int>();
    } else if (key == "factor" || key == "beta_fast" || key == "beta_slow" || key == "attention_factor") {
      if (!v.is_number()) throw InputError(field + ": expected a number (got " + v.dump() + ")");
      const double x = v.get<double>();
      if (key == "factor") r.factor = x;
      if (key == "beta_fast") r.beta_fast = x;
      if (key == "beta_slow") r.beta_slow = x;
      if (key == "attention_factor") r.attention_factor = x;
    } else {
      throw InputError(field + ": unknown field (expected type, factor, original_context, beta_fast, beta_slow, "
                               "attention_factor)");
    }
  }
  try {
    r.validate();
  } catch (const ConfigError& e) {
    throw InputError(source + ": rope_scaling: " + e.what());
  }
  return r;
}

RopeScaling RopeScaling::parse(const std::string& spec, const std::string& flag) {
  auto fail = [&](const std::string& why) -> ConfigError {
    return ConfigError(flag + ": " + why + " in '" + spec + "' (expected " + kForms + ")");
  };
  std::vector<std::string_view> parts;
  {
    std::string_view rest(spec);
    while (true) {
      const auto c = rest.find(',');
      parts.push_back(rest.substr(0, c));
      if (c == std::string_view::npos) break;
      rest.remove_prefix(c + 1);
    }
  }
  RopeScaling r;
  const std::string_view head = parts[0];
  const auto colon = head.find(':');
  const std::string_view tname = head.substr(0, colon);
  if (!lookup_type(tname, r.type)) throw fail("unknown scaling type '" + std::string(tname) + "'");
  if (colon == std::string_view::npos) {
    if (r.type != RopeScalingType::none) throw fail("missing the factor after '" + std::string(tname) + ":'");
  } else if (!read_double(head.substr(colon + 1), r.factor)) {
    throw fail("the factor '" + std::string(head.substr(colon + 1)) + "' is not a number");
  }
  for (std::size_t k = 1; k < parts.size(); k++) {
    const std::string_view p = parts[k];
    const auto eq = p.find('=');
    if (eq == std::string_view::npos) throw fail("expected key=value, got '" + std::string(p) + "'");
    const std::string_view key = p.substr(0, eq), val = p.substr(eq + 1);
    bool ok = false;
    if (key == "orig") {
      ok = read_int(val, r.original_context) && r.original_context > 0;
    } else if (key == "beta_fast") {
      ok = read_double(val, r.beta_fast);
    } else if (key == "beta_slow") {
      ok = read_double(val, r.beta_slow);
    } else if (key == "attention_factor") {
      ok = read_double(val, r.attention_factor);
    } else {
      throw fail("unknown key '" + std::string(key) + "'");
    }
    if (!ok) throw fail("bad value '" + std::string(val) + "' for " + std::string(key));
  }
  try {
    r.validate();
  } catch (const ConfigError& e) {
    throw fail(e.what());
  }
  return r;
}

RopeTables rope_tables(const RopeScaling& s, int head_dim, double base, int L_train, int seq_len) {
  s.validate();
  if (head_dim <= 0 || head_dim % 2 != 0)
    throw ConfigError("rope scaling: the head size must be positive and even (got " + std::to_string(head_dim) + ")");
  if (!(base > 0.0) || !std::isfinite(base))
    throw ConfigError("rope scaling: the base must be positive (got " + fmt(base) + ")");
  const int L = s.original_context > 0 ? s.original_context : L_train;
  if (L <= 0) throw ConfigError("rope scaling: the trained context length must be positive (got " + std::to_string(L) + ")");
  if (seq_len < 0) throw ConfigError("rope scaling: negative sequence length " + std::to_string(seq_len));
  const bool ntk_like = s.type == RopeScalingType::ntk || s.type == RopeScalingType::dynamic_ntk;
  if (ntk_like && head_dim <= 2)
    throw ConfigError("rope scaling " + rope_scaling_type_name(s.type) +
                      ": the head size must be > 2 (the base exponent is d/(d-2))");

  const int d = head_dim, n = head_dim / 2;
  const double sf = s.factor;
  const double dd = static_cast<double>(d);
  auto theta = [&](double b, int i) { return std::pow(b, -2.0 * i / d); };  // same expression as rope_inv_freq

  RopeTables t;
  t.inv_freq.resize(static_cast<std::size_t>(n));
  std::vector<double> f(static_cast<std::size_t>(n));
  switch (s.type) {
    case RopeScalingType::none:
      for (int i = 0; i < n; i++) f[i] = theta(base, i);
      break;
    case RopeScalingType::linear:
      for (int i = 0; i < n; i++) f[i] = theta(base, i) / sf;
      break;
    case RopeScalingType::ntk: {
      const double b = base * std::pow(sf, dd / (dd - 2.0));
      for (int i = 0; i < n; i++) f[i] = theta(b, i);
      break;
    }
    case RopeScalingType::dynamic_ntk: {
      double b = base;
      if (seq_len > L)
        b = base * std::pow(sf * static_cast<double>(seq_len) / L - (sf - 1.0), dd / (dd - 2.0));
      for (int i = 0; i < n; i++) f[i] = theta(b, i);
      break;
    }
    case RopeScalingType::yarn: {
      const double two_pi = 2.0 * std::numbers::pi;
      auto corr_dim = [&](double r) { return dd * std::log(L / (r * two_pi)) / (2.0 * std::log(base)); };
      const double low = std::max(std::floor(corr_dim(s.beta_fast)), 0.0);
      double high = std::min(std::ceil(corr_dim(s.beta_slow)), dd - 1.0);
      if (high == low) high += 0.001;
      for (int i = 0; i < n; i++) {
        const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
        const double th = theta(base, i);
        f[i] = (th / sf) * ramp + th * (1.0 - ramp);
      }
      break;
    }
    case RopeScalingType::yarn_paper: {
      const double alpha = s.beta_slow, beta = s.beta_fast;
      for (int i = 0; i < n; i++) {
        const double th = theta(base, i);
        const double r = L * th / (2.0 * std::numbers::pi);  // L / lambda_i, lambda_i = 2 pi / theta_i
        const double gamma = std::clamp((r - alpha) / (beta - alpha), 0.0, 1.0);
        f[i] = (1.0 - gamma) * th / sf + gamma * th;
      }
      break;
    }
  }
  for (int i = 0; i < n; i++) t.inv_freq[i] = static_cast<float>(f[i]);
  if (is_yarn(s.type))
    t.attention_factor = s.attention_factor > 0.0 ? s.attention_factor : (sf <= 1.0 ? 1.0 : 0.1 * std::log(sf) + 1.0);
  return t;
}

}  // namespace stretch
