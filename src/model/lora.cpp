#include "model/lora.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "core/number_list.hpp"
#include "kernels/matmul.hpp"
#include "model/config.hpp"
#include "model/params.hpp"
#include "model/transformer.hpp"

namespace stretch {

namespace {
constexpr const char* kTargetNames[kLoraTargets] = {"q", "k", "v", "o", "gate", "up", "down"};

bool family_has(Arch arch, LoraTarget t) { return arch == Arch::llama || t != LoraTarget::gate; }
}  // namespace

std::string_view to_string(LoraTarget t) { return kTargetNames[static_cast<int>(t)]; }

std::string LoraConfig::targets_string() const {
  std::string out;
  for (int i = 0; i < kLoraTargets; i++)
    if (has(static_cast<LoraTarget>(i))) out += (out.empty() ? "" : ",") + std::string(kTargetNames[i]);
  return out;
}

std::string lora_target_choices(Arch arch) {
  std::string out;
  for (int i = 0; i < kLoraTargets; i++)
    if (family_has(arch, static_cast<LoraTarget>(i))) out += (out.empty() ? "" : ",") + std::string(kTargetNames[i]);
  return out;
}

unsigned parse_lora_targets(std::string_view list, Arch arch, std::string_view what) {
  const std::string w(what);
  unsigned bits = 0;
  for (const std::string_view name : split_comma_list(list)) {
    int found = -1;
    for (int i = 0; i < kLoraTargets; i++)
      if (name == kTargetNames[i]) found = i;
    if (found < 0)
      throw UsageError(w + ": unknown target '" + std::string(name) + "' (expected a comma-separated list of " +
                       lora_target_choices(arch) + ")");
    if (!family_has(arch, static_cast<LoraTarget>(found)))
      throw UsageError(w + ": a " + std::string(to_string(arch)) + "-architecture model has no '" +
                       std::string(name) + "' projection (its targets are " + lora_target_choices(arch) + ")");
    if (bits & (1u << found)) throw UsageError(w + ": target '" + std::string(name) + "' is listed twice");
    bits |= 1u << found;
  }
  return bits;
}

void LoraConfig::validate(Arch arch, const std::function<std::string(const std::string&)>& name) const {
  auto bad = [&](const std::string& field, const std::string& what) {
    throw ConfigError((name ? name(field) : field_ref(field)) + ": " + what);
  };
  if (rank < 0 || rank > 65536) bad("lora.rank", "expected an integer in [1, 65536], got " + std::to_string(rank));
  if (rank == 0) {
    if (targets != 0 || alpha != 0.0 || dropout != 0.0f)
      bad("lora.rank", "is 0 (no adapter), yet alpha, targets or dropout are set");
    return;
  }
  if (!(alpha > 0.0 && std::isfinite(alpha))) bad("lora.alpha", "expected a value > 0, got " + std::to_string(alpha));
  if (targets == 0 || targets >= (1u << kLoraTargets)) bad("lora.targets", "expected at least one target");
  for (int i = 0; i < kLoraTargets; i++)
    if (has(static_cast<LoraTarget>(i)) && !family_has(arch, static_cast<LoraTarget>(i)))
      bad("lora.targets", std::string("a ") + std::string(to_string(arch)) + "-architecture model has no '" +
                              kTargetNames[i] + "' projection (its targets are " + lora_target_choices(arch) + ")");
  if (!(dropout >= 0.0f && dropout < 1.0f)) bad("lora.dropout", "expected a value in [0, 1), got " + std::to_string(dropout));
}

nlohmann::json LoraConfig::to_json() const {
  return {{"rank", rank}, {"alpha", alpha}, {"targets", targets_string()}, {"dropout", dropout}};
}

LoraConfig LoraConfig::from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) throw InputError(source + ": expected an object {rank, alpha, targets, dropout}");
  LoraConfig c;
  if (!j.contains("rank") || !j["rank"].is_number_integer())
    throw InputError(source + ": field 'rank' must be an integer");
  const auto r = j["rank"].get<long long>();
  if (r < 1 || r > 65536) throw InputError(source + ": field 'rank' is " + std::to_string(r) + ", expected 1..65536");
  c.rank = static_cast<int>(r);
  if (!j.contains("alpha") || !j["alpha"].is_number()) throw InputError(source + ": field 'alpha' must be a number");
  c.alpha = j["alpha"].get<double>();
  if (!j.contains("targets") || !j["targets"].is_string())
    throw InputError(source + ": field 'targets' must be a string such as \"q,k,v,o\"");
  try {
    c.targets = parse_lora_targets(j["targets"].get<std::string>(), Arch::llama, source + ": field 'targets'");
  } catch (const UsageError& e) {
    throw InputError(e.what());
  }
  if (j.contains("dropout")) {
    if (!j["dropout"].is_number()) throw InputError(source + ": field 'dropout' must be a number");
    c.dropout = j["dropout"].get<float>();
  }
  return c;
}

std::vector<LoraSite> lora_sites(const ModelConfig& c) {
  std::vector<LoraSite> out;
  if (!c.lora.enabled()) return out;
  const int C = c.n_embd, KVD = c.kv_dim(), F = c.mlp_hidden;
  const bool llama = c.arch == Arch::llama;
  for (int i = 0; i < kLoraTargets; i++) {
    const auto t = static_cast<LoraTarget>(i);
    if (!c.lora.has(t)) continue;
    switch (t) {
      case LoraTarget::q: out.push_back({t, LoraMatrix::qkv, 0, C, C}); break;
      case LoraTarget::k: out.push_back({t, LoraMatrix::qkv, C, KVD, C}); break;
      case LoraTarget::v: out.push_back({t, LoraMatrix::qkv, C + KVD, KVD, C}); break;
      case LoraTarget::o: out.push_back({t, LoraMatrix::attproj, 0, C, C}); break;
      case LoraTarget::gate: out.push_back({t, LoraMatrix::fc, 0, F, C}); break;
      case LoraTarget::up: out.push_back({t, LoraMatrix::fc, llama ? F : 0, F, C}); break;
      case LoraTarget::down: out.push_back({t, LoraMatrix::fcproj, 0, C, F}); break;
    }
  }
  return out;
}

void lora_forward(float* out, int OC, const float* x, float* u, float* tmp, int N, const LoraSite& site, int R,
                  float s, const float* A, const float* B) {
  matmul_forward(u, x, A, nullptr, N, site.in, R);        // u (N, R) = x A^T
  matmul_forward(tmp, u, B, nullptr, N, R, site.rows);    // tmp (N, rows) = u B^T
  const int rows = site.rows;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    float* y = out + static_cast<std::size_t>(n) * OC + site.row0;
    const float* t = tmp + static_cast<std::size_t>(n) * rows;
    for (int o = 0; o < rows; o++) y[o] += s * t[o];
  }
}

void lora_backward(float* dx, float* dA, float* dB, const float* dout, int OC, const float* x, const float* u,
                   const float* mask, float* tmp, float* du, float* tmpx, int N, const LoraSite& site, int R, float s,
                   const float* A, const float* B) {
  const int rows = site.rows;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {  // tmp (N, rows) = s * the site's columns of dout
    const float* d = dout + static_cast<std::size_t>(n) * OC + site.row0;
    float* t = tmp + static_cast<std::size_t>(n) * rows;
    for (int o = 0; o < rows; o++) t[o] = s * d[o];
  }
  std::fill(du, du + static_cast<std::size_t>(N) * R, 0.0f);
  matmul_backward(du, dB, nullptr, tmp, u, B, N, R, rows);  // du = tmp B; dB += tmp^T u
  if (!dx || !mask) {
    matmul_backward(dx, dA, nullptr, du, x, A, N, site.in, R);  // dx += du A; dA += du^T x
    return;
  }
  const std::size_t nx = static_cast<std::size_t>(N) * site.in;
  std::fill(tmpx, tmpx + nx, 0.0f);
  matmul_backward(tmpx, dA, nullptr, du, x, A, N, site.in, R);
  const long nn = static_cast<long>(nx);
#pragma omp parallel for schedule(static)
  for (long i = 0; i < nn; i++) dx[i] += tmpx[i] * mask[i];
}

std::unique_ptr<Transformer> base_of(const Transformer& model) {
  ModelConfig base = model.config();
  base.lora = LoraConfig{};
  auto out = std::make_unique<Transformer>(base);
  // the base tensors come first in the slab and keep their offsets (model/params.cpp)
  std::copy(model.params().data(), model.params().data() + out->params().size(), out->params().data());
  return out;
}

StackedLora stack_lora(const ConstParamView& p, const LoraConfig& lora, int layer, const std::vector<LoraPart>& parts,
                       int rows, int in, const LoraRowMap& row_of) {
  std::vector<LoraPart> adapted;
  for (const LoraPart& part : parts)
    if (lora.has(part.target)) adapted.push_back(part);
  StackedLora out;
  if (adapted.empty()) return out;
  const int R = lora.rank, n = static_cast<int>(adapted.size());
  const std::size_t r = static_cast<std::size_t>(n) * R, cols = static_cast<std::size_t>(in);
  out.r = static_cast<int>(r);
  out.A.assign(r * cols, 0.0f);
  out.B.assign(static_cast<std::size_t>(rows) * r, 0.0f);
  for (int k = 0; k < n; k++) {
    const LoraPart& part = adapted[static_cast<std::size_t>(k)];
    const float* a = p.lora_a[layer][static_cast<int>(part.target)];
    const float* b = p.lora_b[layer][static_cast<int>(part.target)];
    std::copy(a, a + static_cast<std::size_t>(R) * cols, out.A.begin() + static_cast<std::ptrdiff_t>(k * R * cols));
    for (int o = 0; o < part.rows; o++) {
      const std::size_t h = static_cast<std::size_t>(row_of(part.offset + o));
      for (int j = 0; j < R; j++) out.B[h * r + static_cast<std::size_t>(k * R + j)] = b[static_cast<std::size_t>(o) * R + j];
    }
  }
  return out;
}

void split_lora(int layer, const std::vector<LoraPart>& parts, int r, double scale, const std::vector<float>& A,
                const std::vector<float>& B, const LoraRowMap& row_of, std::vector<LoraPiece>& out) {
  const std::size_t rr = static_cast<std::size_t>(r);
  for (const LoraPart& part : parts) {
    LoraPiece p{layer, part.target, r, scale, parts.size() > 1, A, {}};
    p.B.resize(static_cast<std::size_t>(part.rows) * rr);
    for (int o = 0; o < part.rows; o++) {
      const std::size_t h = static_cast<std::size_t>(row_of(part.offset + o));
      std::copy(B.begin() + static_cast<std::ptrdiff_t>(h * rr), B.begin() + static_cast<std::ptrdiff_t>((h + 1) * rr),
                p.B.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(o) * rr));
    }
    out.push_back(std::move(p));
  }
}

std::unique_ptr<Transformer> model_with_adapter(const Transformer& base, const std::vector<LoraPiece>& pieces,
                                                float dropout, const std::string& source) {
  const ModelConfig& bc = base.config();
  if (bc.lora.enabled()) throw InputError(source + ": the base model already holds an adapter (merge it first)");
  if (pieces.empty()) throw InputError(source + ": the adapter holds no LoRA matrices");
  unsigned targets = 0;
  int R = 0;
  bool plain = true;
  for (const LoraPiece& p : pieces) {
    targets |= 1u << static_cast<int>(p.target);
    R = std::max(R, p.r);
    plain = plain && !p.fused && p.r == pieces.front().r && p.scale == pieces.front().scale;
  }
  ModelConfig c = bc;
  c.lora.rank = R;
  c.lora.alpha = plain ? pieces.front().scale * R : static_cast<double>(R);
  c.lora.targets = targets;
  c.lora.dropout = dropout;
  try {
    c.validate();
  } catch (const ConfigError& e) {
    throw InputError(source + ": " + e.what());
  }
  auto model = std::make_unique<Transformer>(c);
  std::copy(base.params().data(), base.params().data() + base.params().size(), model->params().data());
  ParamView v = bind_param_view(c, model->specs(), model->params().data());
  const std::vector<LoraSite> sites = lora_sites(c);
  for (const LoraPiece& p : pieces) {
    const LoraSite& site = *std::find_if(sites.begin(), sites.end(), [&](const LoraSite& x) { return x.target == p.target; });
    const std::size_t r = static_cast<std::size_t>(p.r);
    if (p.A.size() != r * site.in || p.B.size() != static_cast<std::size_t>(site.rows) * r)
      throw ConfigError("model_with_adapter: a " + std::string(to_string(p.target)) + " piece of layer " +
                        std::to_string(p.layer) + " is not (r, in) / (rows, r)");
    const float fold = plain ? 1.0f : static_cast<float>(p.scale);
    float* a = v.lora_a[p.layer][static_cast<int>(p.target)];
    float* b = v.lora_b[p.layer][static_cast<int>(p.target)];
    // A: the piece's r rows, padded with zero rows up to R; B: its r columns of each row, padded likewise
    std::copy(p.A.begin(), p.A.end(), a);
    for (int o = 0; o < site.rows; o++)
      for (std::size_t j = 0; j < r; j++) b[static_cast<std::size_t>(o) * R + j] = fold * p.B[o * r + j];
  }
  return model;
}

std::unique_ptr<Transformer> merge_lora(const Transformer& model) {
  model.require_fp32_weights("merging a LoRA adapter");
  auto merged = base_of(model);
  const ModelConfig& base = merged->config();
  const ModelConfig& c = model.config();
  if (!c.lora.enabled()) return merged;
  const ConstParamView src = bind_param_view(c, model.specs(), model.params().data());
  ParamView dst = bind_param_view(base, merged->specs(), merged->params().data());
  const int R = c.lora.rank;
  const double s = c.lora.alpha / R;
  const auto sites = lora_sites(c);
  for (int l = 0; l < c.n_layer; l++) {
    const LayerView& w = dst.layers[l];
    for (const LoraSite& site : sites) {
      const int t = static_cast<int>(site.target);
      const float* A = src.lora_a[l][t];
      const float* B = src.lora_b[l][t];
      float* W = lora_base_matrix(w, site.matrix);
      const int in = site.in;
#pragma omp parallel for schedule(static)
      for (int o = 0; o < site.rows; o++) {
        float* row = W + static_cast<std::size_t>(site.row0 + o) * in;
        for (int i = 0; i < in; i++) {
          double acc = 0.0;
          for (int r = 0; r < R; r++)
            acc += static_cast<double>(B[static_cast<std::size_t>(o) * R + r]) * A[static_cast<std::size_t>(r) * in + i];
          row[i] = static_cast<float>(row[i] + s * acc);
        }
      }
    }
  }
  return merged;
}

}  // namespace stretch
