#include "position/rope_scaling.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <fstream>
#include <numbers>
#include <string_view>
#include <system_error>
#include <utility>

#include "core/error.hpp"
#include "core/json_int.hpp"

namespace stretch {

namespace {

constexpr std::array<std::pair<RopeScalingType, std::string_view>, 8> kNames{{
    {RopeScalingType::none, "none"},
    {RopeScalingType::linear, "linear"},
    {RopeScalingType::ntk, "ntk"},
    {RopeScalingType::dynamic_ntk, "dynamic-ntk"},
    {RopeScalingType::yarn, "yarn"},
    {RopeScalingType::yarn_paper, "yarn-paper"},
    {RopeScalingType::llama3, "llama3"},
    {RopeScalingType::longrope, "longrope"},
}};

constexpr const char* kForms =
    "none, linear:S, ntk:S, dynamic-ntk:S, yarn:S, yarn-paper:S, llama3:S, longrope:S with S >= 1, optionally "
    "followed by ,orig=L; for yarn / yarn-paper ,beta_fast=B,beta_slow=B,attention_factor=A,mscale=M,"
    "mscale_all_dim=M; for yarn ,truncate=0|1; for llama3 ,low=LO,high=HI; for longrope ,short=LIST,long=LIST,"
    "attention_factor=A with LIST = x:y:... or @file.json (a JSON array)";

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

// "1:1.02:1.5" -> {1, 1.02, 1.5}; false on an empty list or item, or one that is not a finite number.
bool read_list(std::string_view s, std::vector<double>& out) {
  out.clear();
  while (true) {
    const auto c = s.find(':');
    double x = 0;
    if (!read_double(s.substr(0, c), x)) return false;
    out.push_back(x);
    if (c == std::string_view::npos) return true;
    s.remove_prefix(c + 1);
  }
}

std::string fmt_list(const std::vector<double>& v) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); i++) out += (i ? ":" : "") + fmt(v[i]);
  return out;
}

// HF's yarn_get_mscale: 0.1 k ln s + 1, 1 when s <= 1.
double get_mscale(double s, double k) { return s <= 1.0 ? 1.0 : 0.1 * k * std::log(s) + 1.0; }

bool uses_attention_factor(RopeScalingType t) { return is_yarn(t) || t == RopeScalingType::longrope; }

}  // namespace

std::string rope_scaling_type_name(RopeScalingType t) {
  for (auto& [v, s] : kNames)
    if (v == t) return std::string(s);
  return "?";
}

bool RopeScaling::depends_on_length() const {
  return type == RopeScalingType::dynamic_ntk || type == RopeScalingType::longrope;
}

void RopeScaling::validate() const {
  const std::string what = "rope scaling " + rope_scaling_type_name(type) + ": ";
  const RopeScaling d;
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
    if (!std::isfinite(mscale) || mscale < 0.0 || !std::isfinite(mscale_all_dim) || mscale_all_dim < 0.0)
      throw ConfigError(what + "mscale and mscale_all_dim must be >= 0 (got " + fmt(mscale) + ", " +
                        fmt(mscale_all_dim) + ")");
    if ((mscale > 0.0) != (mscale_all_dim > 0.0))
      throw ConfigError(what + "mscale and mscale_all_dim are used together (got mscale " + fmt(mscale) +
                        ", mscale_all_dim " + fmt(mscale_all_dim) + "; transformers ignores one alone)");
    if (mscale > 0.0 && attention_factor > 0.0)
      throw ConfigError(what + "attention_factor " + fmt(attention_factor) +
                        " and mscale / mscale_all_dim both set the attention factor (give one)");
  } else {
    if (beta_fast != d.beta_fast || beta_slow != d.beta_slow)
      throw ConfigError(what + "beta_fast and beta_slow apply only to yarn and yarn-paper");
    if (mscale != d.mscale || mscale_all_dim != d.mscale_all_dim)
      throw ConfigError(what + "mscale and mscale_all_dim apply only to yarn and yarn-paper");
  }
  if (!uses_attention_factor(type) && attention_factor != d.attention_factor)
    throw ConfigError(what + "attention_factor applies only to yarn, yarn-paper and longrope");
  if (type != RopeScalingType::yarn && truncate != d.truncate)
    throw ConfigError(what + "truncate applies only to yarn");
  if (type == RopeScalingType::llama3) {
    if (!std::isfinite(low_freq_factor) || !std::isfinite(high_freq_factor) || !(low_freq_factor > 0.0) ||
        !(high_freq_factor >= low_freq_factor))
      throw ConfigError(what + "need high_freq_factor >= low_freq_factor > 0 (got low_freq_factor " +
                        fmt(low_freq_factor) + ", high_freq_factor " + fmt(high_freq_factor) + ")");
  } else if (low_freq_factor != d.low_freq_factor || high_freq_factor != d.high_freq_factor) {
    throw ConfigError(what + "low_freq_factor and high_freq_factor apply only to llama3");
  }
  if (type == RopeScalingType::longrope) {
    if (short_factor.empty() || long_factor.empty())
      throw ConfigError(what + "needs both short_factor and long_factor (head_dim / 2 numbers each)");
    if (short_factor.size() != long_factor.size())
      throw ConfigError(what + "short_factor has " + std::to_string(short_factor.size()) + " numbers but long_factor " +
                        std::to_string(long_factor.size()) + " (head_dim / 2 each)");
    for (const auto* v : {&short_factor, &long_factor})
      for (double x : *v)
        if (!std::isfinite(x) || !(x > 0.0))
          throw ConfigError(what + (v == &short_factor ? "short_factor" : "long_factor") +
                            " holds " + fmt(x) + " (expected finite numbers > 0)");
  } else if (!short_factor.empty() || !long_factor.empty()) {
    throw ConfigError(what + "short_factor and long_factor apply only to longrope");
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
  if (mscale != d.mscale) s += ",mscale=" + fmt(mscale);
  if (mscale_all_dim != d.mscale_all_dim) s += ",mscale_all_dim=" + fmt(mscale_all_dim);
  if (truncate != d.truncate) s += std::string(",truncate=") + (truncate ? "1" : "0");
  if (type == RopeScalingType::llama3) s += ",low=" + fmt(low_freq_factor) + ",high=" + fmt(high_freq_factor);
  if (!short_factor.empty()) s += ",short=" + fmt_list(short_factor);
  if (!long_factor.empty()) s += ",long=" + fmt_list(long_factor);
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
  if (mscale != 0.0) j["mscale"] = mscale;
  if (mscale_all_dim != 0.0) j["mscale_all_dim"] = mscale_all_dim;
  if (!truncate) j["truncate"] = false;
  if (type == RopeScalingType::llama3) {
    j["low_freq_factor"] = low_freq_factor;
    j["high_freq_factor"] = high_freq_factor;
  }
  if (!short_factor.empty()) j["short_factor"] = short_factor;
  if (!long_factor.empty()) j["long_factor"] = long_factor;
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
        throw InputError(field + ": expected one of none, linear, ntk, dynamic-ntk, yarn, yarn-paper, llama3, "
                                 "longrope (got " + v.dump() + ")");
    } else if (key == "original_context") {
      const auto n = json_int_in(v, 0, 1000000000);
      if (!n) throw InputError(field + ": expected a non-negative integer (got " + v.dump() + ")");
      r.original_context = *n;
    } else if (key == "factor" || key == "beta_fast" || key == "beta_slow" || key == "attention_factor" ||
               key == "mscale" || key == "mscale_all_dim" || key == "low_freq_factor" || key == "high_freq_factor") {
      if (!v.is_number()) throw InputError(field + ": expected a number (got " + v.dump() + ")");
      const double x = v.get<double>();
      if (key == "factor") r.factor = x;
      if (key == "beta_fast") r.beta_fast = x;
      if (key == "beta_slow") r.beta_slow = x;
      if (key == "attention_factor") r.attention_factor = x;
      if (key == "mscale") r.mscale = x;
      if (key == "mscale_all_dim") r.mscale_all_dim = x;
      if (key == "low_freq_factor") r.low_freq_factor = x;
      if (key == "high_freq_factor") r.high_freq_factor = x;
    } else if (key == "truncate") {
      if (!v.is_boolean()) throw InputError(field + ": expected true or false (got " + v.dump() + ")");
      r.truncate = v.get<bool>();
    } else if (key == "short_factor" || key == "long_factor") {
      std::vector<double>& out = key == "short_factor" ? r.short_factor : r.long_factor;
      if (!v.is_array() || v.empty()) throw InputError(field + ": expected a non-empty array of numbers");
      for (const auto& x : v) {
        if (!x.is_number()) throw InputError(field + ": expected numbers (got " + x.dump() + ")");
        out.push_back(x.get<double>());
      }
    } else {
      throw InputError(field + ": unknown field (expected type, factor, original_context, beta_fast, beta_slow, "
                               "attention_factor, mscale, mscale_all_dim, truncate, low_freq_factor, "
                               "high_freq_factor, short_factor, long_factor)");
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
  // short=LIST / long=LIST: colon-separated numbers, or @PATH naming a JSON array of numbers.
  auto read_factors = [&](std::string_view key, std::string_view val, std::vector<double>& out) -> bool {
    if (val.empty() || val[0] != '@') return read_list(val, out);
    const std::string path(val.substr(1));
    std::ifstream in(path);
    if (!in)
      throw InputError(flag + ": cannot read the " + std::string(key) + " factors file '" + path + "' (in '" + spec +
                       "')");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(flag + ": " + path + " is not JSON (" + e.what() + "; expected an array of numbers)");
    }
    out.clear();
    if (!j.is_array() || j.empty())
      throw InputError(flag + ": " + path + " must hold a non-empty JSON array of numbers (the " + std::string(key) +
                       " factors)");
    for (const auto& x : j) {
      if (!x.is_number())
        throw InputError(flag + ": " + path + " must hold a JSON array of numbers (got " + x.dump() + ")");
      out.push_back(x.get<double>());
    }
    return true;
  };
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
    } else if (key == "mscale") {
      ok = read_double(val, r.mscale);
    } else if (key == "mscale_all_dim") {
      ok = read_double(val, r.mscale_all_dim);
    } else if (key == "truncate") {
      ok = val == "0" || val == "1" || val == "false" || val == "true";
      r.truncate = val == "1" || val == "true";
    } else if (key == "low") {
      ok = read_double(val, r.low_freq_factor);
    } else if (key == "high") {
      ok = read_double(val, r.high_freq_factor);
    } else if (key == "short") {
      ok = read_factors(key, val, r.short_factor);
    } else if (key == "long") {
      ok = read_factors(key, val, r.long_factor);
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

namespace {

// The table in double: f[i] = theta'_i; returns the attention factor. Checks the arguments (see rope_tables).
double compute(const RopeScaling& s, int head_dim, double base, int L_train, int seq_len, std::vector<double>& f) {
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
  if (s.type == RopeScalingType::longrope)
    for (const auto* v : {&s.short_factor, &s.long_factor})
      if (static_cast<int>(v->size()) != n)
        throw ConfigError("rope scaling longrope: " +
                          std::string(v == &s.short_factor ? "short_factor" : "long_factor") + " has " + std::to_string(v->size()) + " numbers (expected head_dim / 2 = " +
                          std::to_string(n) + ")");

  const double sf = s.factor;
  const double dd = static_cast<double>(d);
  const double two_pi = 2.0 * std::numbers::pi;
  auto theta = [&](double b, int i) { return std::pow(b, -2.0 * i / d); };  // same expression as rope_inv_freq

  f.assign(static_cast<std::size_t>(n), 0.0);
  double attention = 1.0;
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
      auto corr_dim = [&](double r) { return dd * std::log(L / (r * two_pi)) / (2.0 * std::log(base)); };
      double low = corr_dim(s.beta_fast), high = corr_dim(s.beta_slow);
      if (s.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = std::max(low, 0.0);
      high = std::min(high, dd - 1.0);
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
        const double r = L * th / two_pi;  // L / lambda_i, lambda_i = 2 pi / theta_i
        const double gamma = std::clamp((r - alpha) / (beta - alpha), 0.0, 1.0);
        f[i] = (1.0 - gamma) * th / sf + gamma * th;
      }
      break;
    }
    case RopeScalingType::llama3: {
      const double lo = s.low_freq_factor, hi = s.high_freq_factor;
      const double low_wavelen = L / lo, high_wavelen = L / hi;
      for (int i = 0; i < n; i++) {
        const double th = theta(base, i);
        const double wavelen = two_pi / th;
        if (wavelen < high_wavelen) {
          f[i] = th;
        } else if (wavelen > low_wavelen || hi == lo) {  // hi == lo: the step, wavelen == L / lo divided by s
          f[i] = th / sf;
        } else {
          const double g = (L / wavelen - lo) / (hi - lo);
          f[i] = (1.0 - g) * th / sf + g * th;
        }
      }
      break;
    }
    case RopeScalingType::longrope: {
      const std::vector<double>& e = seq_len > L ? s.long_factor : s.short_factor;
      for (int i = 0; i < n; i++) f[i] = theta(base, i) / e[static_cast<std::size_t>(i)];
      attention = s.attention_factor > 0.0 ? s.attention_factor
                                           : (sf <= 1.0 ? 1.0 : std::sqrt(1.0 + std::log(sf) / std::log(L)));
      break;
    }
  }
  if (is_yarn(s.type)) {
    if (s.attention_factor > 0.0)
      attention = s.attention_factor;
    else if (s.mscale > 0.0 && s.mscale_all_dim > 0.0)
      attention = get_mscale(sf, s.mscale) / get_mscale(sf, s.mscale_all_dim);
    else
      attention = sf <= 1.0 ? 1.0 : 0.1 * std::log(sf) + 1.0;
  }
  return attention;
}

}  // namespace

RopeTables rope_tables(const RopeScaling& s, int head_dim, double base, int L_train, int seq_len) {
  std::vector<double> f;
  RopeTables t;
  t.attention_factor = compute(s, head_dim, base, L_train, seq_len, f);
  t.inv_freq.resize(f.size());
  for (std::size_t i = 0; i < f.size(); i++) t.inv_freq[i] = static_cast<float>(f[i]);
  return t;
}

std::vector<double> rope_freq_divisors(const RopeScaling& s, int head_dim, double base, int L_train, int seq_len) {
  std::vector<double> f;
  compute(s, head_dim, base, L_train, seq_len, f);
  for (std::size_t i = 0; i < f.size(); i++)
    f[i] = std::pow(base, -2.0 * static_cast<double>(i) / head_dim) / f[i];
  return f;
}

}  // namespace stretch
