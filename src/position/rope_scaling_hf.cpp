#include "position/rope_scaling_hf.hpp"

#include <charconv>
#include <cmath>
#include <set>
#include <system_error>

#include "core/error.hpp"
#include "core/json_int.hpp"

namespace stretch {

namespace {

std::string fmt(double x) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, r.ptr);
}

// Reads config.json values, naming `where` ("config.json: rope_scaling.factor") in errors.
struct Reader {
  std::string source;
  std::string where(const std::string& dict, const std::string& key) const {
    return source + ": " + (dict.empty() ? key : dict + "." + key);
  }
  // A finite number; `positive` requires > 0.
  double number(const nlohmann::json& v, const std::string& at, bool positive) const {
    if (!v.is_number() || !std::isfinite(v.get<double>()) || (positive && !(v.get<double>() > 0.0)))
      throw InputError(at + ": expected a " + std::string(positive ? "positive " : "") + "number (got " + v.dump() +
                       ")");
    return v.get<double>();
  }
  int count(const nlohmann::json& v, const std::string& at) const {
    const auto n = json_int_in(v, 1, 1000000000);
    if (!n) throw InputError(at + ": expected a positive integer (got " + v.dump() + ")");
    return *n;
  }
};

bool has_value(const nlohmann::json& obj, const char* key) { return obj.contains(key) && !obj.at(key).is_null(); }

}  // namespace

HfRope rope_from_hf_config(const nlohmann::json& config, int max_position_embeddings, int head_dim,
                           const std::string& source) {
  const Reader rd{source};
  if (!config.is_object()) throw InputError(source + ": the config must be a JSON object");
  if (max_position_embeddings <= 0)
    throw InputError(source + ": max_position_embeddings must be positive (got " +
                     std::to_string(max_position_embeddings) + ")");
  if (head_dim <= 0 || head_dim % 2 != 0)
    throw InputError(source + ": the RoPE head size must be positive and even (got " + std::to_string(head_dim) + ")");
  const int M = max_position_embeddings;

  // The dict: a non-empty rope_scaling wins (transformers: `rope_scaling or self.rope_parameters`).
  std::string dname = "rope_scaling";
  nlohmann::json D = nlohmann::json::object();
  if (config.contains("rope_scaling") && !config.at("rope_scaling").is_null()) {
    if (!config.at("rope_scaling").is_object())
      throw InputError(rd.where("", "rope_scaling") + ": expected an object or null (got " +
                       config.at("rope_scaling").dump() + ")");
    D = config.at("rope_scaling");
  }
  if (D.empty() && config.contains("rope_parameters") && !config.at("rope_parameters").is_null()) {
    dname = "rope_parameters";
    if (!config.at("rope_parameters").is_object())
      throw InputError(rd.where("", "rope_parameters") + ": expected an object or null (got " +
                       config.at("rope_parameters").dump() + ")");
    D = config.at("rope_parameters");
  }
  for (auto it = D.begin(); it != D.end(); ++it)
    if (it.value().is_object())
      throw InputError(rd.where(dname, it.key()) +
                       ": per-layer-type RoPE parameters are not supported (one set of parameters for every layer)");

  // Type.
  std::string type = "default";
  for (const char* k : {"type", "rope_type"})
    if (D.contains(k)) {
      if (!D.at(k).is_string())
        throw InputError(rd.where(dname, k) + ": expected a string (got " + D.at(k).dump() + ")");
    }
  if (D.contains("rope_type")) type = D.at("rope_type").get<std::string>();
  else if (D.contains("type")) type = D.at("type").get<std::string>();
  if (D.contains("rope_type") && D.contains("type") && D.at("type").get<std::string>() != type)
    throw InputError(rd.where(dname, "type") + ": \"" + D.at("type").get<std::string>() + "\" differs from " + dname +
                     ".rope_type \"" + type + "\"");
  static const std::set<std::string> known{"default", "linear",   "proportional", "dynamic",
                                           "yarn",    "llama3",   "longrope"};
  if (!known.count(type))
    throw InputError(rd.where(dname, D.contains("rope_type") ? "rope_type" : "type") + ": unknown RoPE type \"" + type +
                     "\" (supported: default, linear, proportional, dynamic, yarn, llama3, longrope)");
  // Keys the type does not define (e.g. "finetuned" in some YaRN checkpoints) are ignored, as transformers ignores
  // them (with a warning): the frequencies are those transformers computes. A key that is defined is checked below.

  // Partial rotary embeddings.
  for (const auto& [obj, name] : {std::pair<const nlohmann::json*, std::string>{&config, ""}, {&D, dname}})
    if (has_value(*obj, "partial_rotary_factor") &&
        rd.number(obj->at("partial_rotary_factor"), rd.where(name, "partial_rotary_factor"), true) != 1.0)
      throw InputError(rd.where(name, "partial_rotary_factor") + ": " + obj->at("partial_rotary_factor").dump() +
                       " (partial rotary embeddings are not supported; expected 1)");

  HfRope out;
  if (D.contains("rope_theta"))
    out.base = rd.number(D.at("rope_theta"), rd.where(dname, "rope_theta"), true);
  else if (has_value(config, "rope_theta"))
    out.base = rd.number(config.at("rope_theta"), rd.where("", "rope_theta"), true);

  RopeScaling& s = out.scaling;
  auto required = [&](const char* k) -> double {
    if (!D.contains(k)) throw InputError(rd.where(dname, k) + ": missing (required for RoPE type \"" + type + "\")");
    return rd.number(D.at(k), rd.where(dname, k), true);
  };
  auto optional = [&](const char* k, double fallback) -> double {  // null or absent: fallback
    return has_value(D, k) ? rd.number(D.at(k), rd.where(dname, k), false) : fallback;
  };
  // L_orig: the top-level key wins, then D's, then M.
  auto original = [&]() -> int {
    if (config.contains("original_max_position_embeddings"))
      return rd.count(config.at("original_max_position_embeddings"), rd.where("", "original_max_position_embeddings"));
    if (D.contains("original_max_position_embeddings"))
      return rd.count(D.at("original_max_position_embeddings"), rd.where(dname, "original_max_position_embeddings"));
    return M;
  };
  auto factor_list = [&](const char* k) {
    if (!D.contains(k)) throw InputError(rd.where(dname, k) + ": missing (required for RoPE type \"longrope\")");
    const nlohmann::json& v = D.at(k);
    if (!v.is_array()) throw InputError(rd.where(dname, k) + ": expected an array of numbers (got " + v.dump() + ")");
    if (static_cast<int>(v.size()) != head_dim / 2)
      throw InputError(rd.where(dname, k) + ": has " + std::to_string(v.size()) + " numbers (expected head_dim / 2 = " +
                       std::to_string(head_dim / 2) + ")");
    std::vector<double> out_list;
    for (const auto& x : v) out_list.push_back(rd.number(x, rd.where(dname, k), true));
    return out_list;
  };
  auto attention = [&]() -> double {
    if (!has_value(D, "attention_factor")) return 0.0;
    return rd.number(D.at("attention_factor"), rd.where(dname, "attention_factor"), true);
  };

  if (type == "linear" || type == "proportional") {
    s.type = RopeScalingType::linear;
    s.factor = type == "linear" ? required("factor") : optional("factor", 1.0);
  } else if (type == "dynamic") {
    s.type = RopeScalingType::dynamic_ntk;
    s.factor = required("factor");
  } else if (type == "yarn") {
    s.type = RopeScalingType::yarn;
    const int L = original();
    if (!D.contains("factor"))
      throw InputError(rd.where(dname, "factor") + ": missing (required for RoPE type \"yarn\")");
    s.factor = has_value(D, "factor") ? required("factor") : static_cast<double>(M) / L;
    s.original_context = L == M ? 0 : L;
    // transformers: `rope_parameters.get("beta_fast") or 32`
    if (const double b = optional("beta_fast", 0.0); b != 0.0) s.beta_fast = b;
    if (const double b = optional("beta_slow", 0.0); b != 0.0) s.beta_slow = b;
    s.attention_factor = attention();
    const double ms = optional("mscale", 0.0), msa = optional("mscale_all_dim", 0.0);
    if (s.attention_factor == 0.0 && ms != 0.0 && msa != 0.0) {
      s.mscale = ms;
      s.mscale_all_dim = msa;
    }
    if (D.contains("truncate")) {
      const nlohmann::json& t = D.at("truncate");
      if (!t.is_boolean() && !t.is_null())
        throw InputError(rd.where(dname, "truncate") + ": expected true, false or null (got " + t.dump() + ")");
      s.truncate = t.is_boolean() && t.get<bool>();
    }
  } else if (type == "llama3") {
    s.type = RopeScalingType::llama3;
    s.factor = required("factor");
    s.low_freq_factor = required("low_freq_factor");
    s.high_freq_factor = required("high_freq_factor");
    const int L = original();
    s.original_context = L == M ? 0 : L;
  } else if (type == "longrope") {
    s.type = RopeScalingType::longrope;
    s.short_factor = factor_list("short_factor");
    s.long_factor = factor_list("long_factor");
    const int L = original();
    s.factor = has_value(D, "factor") ? required("factor") : static_cast<double>(M) / L;
    if (s.factor < 1.0) s.factor = 1.0;  // attention 1 either way (transformers: factor <= 1 -> 1)
    s.original_context = L == M ? 0 : L;
    s.attention_factor = attention();
  }
  try {
    s.validate();
  } catch (const ConfigError& e) {
    throw InputError(source + ": " + dname + ": " + e.what());
  }
  return out;
}

void rope_to_hf_config(double base, const RopeScaling& s, int max_position_embeddings, int head_dim,
                       nlohmann::json& config) {
  s.validate();
  const std::string what = "transformers config: rope scaling " + s.to_string() + ": ";
  if (config.is_null()) config = nlohmann::json::object();
  if (!config.is_object()) throw ConfigError("transformers config: expected a JSON object to write into");
  if (max_position_embeddings <= 0)
    throw ConfigError(what + "max_position_embeddings must be positive (got " +
                      std::to_string(max_position_embeddings) + ")");
  if (head_dim <= 0 || head_dim % 2 != 0)
    throw ConfigError(what + "the head size must be positive and even (got " + std::to_string(head_dim) + ")");
  if (!(base > 0.0) || !std::isfinite(base))
    throw ConfigError(what + "the base must be positive (got " + fmt(base) + ")");
  const int M = max_position_embeddings;
  const int L = s.original_context > 0 ? s.original_context : M;

  nlohmann::json r = nlohmann::json::object();
  auto set_type = [&](const char* t) {
    r["type"] = t;
    r["rope_type"] = t;
    r["factor"] = s.factor;
  };
  double theta = base;
  bool uses_original = false;
  switch (s.type) {
    case RopeScalingType::none:
      break;
    case RopeScalingType::ntk:
      if (head_dim <= 2) throw ConfigError(what + "ntk needs a head size > 2");
      theta = base * std::pow(s.factor, static_cast<double>(head_dim) / (head_dim - 2));
      break;
    case RopeScalingType::linear:
      set_type("linear");
      break;
    case RopeScalingType::dynamic_ntk:
      if (L != M)
        throw ConfigError(what + "dynamic-ntk with original_context " + std::to_string(L) +
                          " cannot be expressed: transformers' \"dynamic\" uses max_position_embeddings (" +
                          std::to_string(M) + ") as the trained length");
      set_type("dynamic");
      break;
    case RopeScalingType::yarn:
      set_type("yarn");
      r["beta_fast"] = s.beta_fast;
      r["beta_slow"] = s.beta_slow;
      if (s.attention_factor > 0.0) r["attention_factor"] = s.attention_factor;
      if (s.mscale > 0.0) {
        r["mscale"] = s.mscale;
        r["mscale_all_dim"] = s.mscale_all_dim;
      }
      if (!s.truncate) r["truncate"] = false;
      uses_original = true;
      break;
    case RopeScalingType::yarn_paper:
      throw ConfigError(what + "yarn-paper has no transformers RoPE type (transformers' yarn is ours \"yarn\")");
    case RopeScalingType::llama3:
      set_type("llama3");
      r["low_freq_factor"] = s.low_freq_factor;
      r["high_freq_factor"] = s.high_freq_factor;
      uses_original = true;
      break;
    case RopeScalingType::longrope:
      for (const auto* v : {&s.short_factor, &s.long_factor})
        if (static_cast<int>(v->size()) != head_dim / 2)
          throw ConfigError(what + "longrope " + (v == &s.short_factor ? "short_factor" : "long_factor") + " has " +
                            std::to_string(v->size()) + " numbers (expected head_dim / 2 = " +
                            std::to_string(head_dim / 2) + ")");
      set_type("longrope");
      r["short_factor"] = s.short_factor;
      r["long_factor"] = s.long_factor;
      if (s.attention_factor > 0.0) r["attention_factor"] = s.attention_factor;
      uses_original = true;
      break;
  }
  if (uses_original) {
    r["original_max_position_embeddings"] = L;
    config["original_max_position_embeddings"] = L;
  }
  config.erase("rope_parameters");
  config["rope_theta"] = theta;
  config["rope_scaling"] = r.empty() ? nlohmann::json(nullptr) : r;
}

}  // namespace stretch
