// LoRA adapters (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models"): a frozen Linear layer
// y = x W^T (+ b) becomes
//     y = x W^T (+ b) + s * (drop(x) A^T) B^T,   A (R, in), B (out, R), s = alpha / R,
// for the projections named by the targets. A starts Kaiming-uniform, U(-1/sqrt(in), 1/sqrt(in)) (PEFT's
// kaiming_uniform_(a = sqrt(5))), B at zero, so an adapter at step 0 is the base model. drop() is inverted dropout
// on the adapter's input only, in training only (PEFT's lora_dropout).
//
// Our fused projections hold several targets: q, k, v are row blocks of the attention's qkv matrix (QKV, C) (q:
// rows [0, C), k: [C, C + KVD), v: [C + KVD, C + 2 KVD)); llama's gate and up are the row blocks [0, F) and
// [F, 2F) of w13; o is the attention output (C, C), down the MLP output (C, F); a gpt model's MLP input c_fc is
// `up` (it has no gate). Each target gets its own A and B, so the adapter is the one PEFT trains on the unfused
// q_proj, k_proj, ... of a Hugging Face model.
//
// The adapter's tensors are parameters of the model (model/params.hpp), after every base tensor, named
// "<layer prefix>lora.<target>.A" and ".B" (h.3.lora.q.A, layers.0.lora.down.B); a checkpoint of a LoRA fine-tune
// holds the base and the adapter, and merge_lora() folds the adapter into the base weights:
//     W[rows of the target] += s * B A.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace stretch {

enum class Arch;
struct ModelConfig;
class Transformer;
template <class F>
struct BasicParamView;  // model/params.hpp, which includes this header through model/config.hpp
using ConstParamView = BasicParamView<const float>;

enum class LoraTarget { q, k, v, o, gate, up, down };
inline constexpr int kLoraTargets = 7;
std::string_view to_string(LoraTarget t);

// Which base matrix of a block a target sits in.
enum class LoraMatrix { qkv, attproj, fc, fcproj };

struct LoraConfig {
  int rank = 0;         // R; 0: no adapter
  double alpha = 0.0;   // the scale is alpha / R
  unsigned targets = 0; // bit (1 << LoraTarget)
  float dropout = 0.0f; // on the adapter's input, in training

  bool enabled() const { return rank > 0; }
  bool has(LoraTarget t) const { return (targets >> static_cast<int>(t)) & 1u; }
  float scale() const { return static_cast<float>(alpha / rank); }
  // "q,k,v,o" in the canonical order
  std::string targets_string() const;
  bool operator==(const LoraConfig&) const = default;
  // ConfigError naming the field ("lora.rank", "lora.alpha", "lora.targets", "lora.dropout") through `name`.
  void validate(Arch arch, const std::function<std::string(const std::string&)>& name = {}) const;
  nlohmann::json to_json() const;
  // InputError naming `source` and the field.
  static LoraConfig from_json(const nlohmann::json& j, const std::string& source);
};

// The targets a family has: gpt q,k,v,o,up,down; llama q,k,v,o,gate,up,down.
std::string lora_target_choices(Arch arch);
// "q,k,v,o" -> bits; UsageError naming `what` for an unknown name, an empty list, a repeat, or a target the
// family lacks.
unsigned parse_lora_targets(std::string_view list, Arch arch, std::string_view what);

// One adapted projection of a block: its base matrix, the rows of that matrix it adds to, and its input width.
struct LoraSite {
  LoraTarget target;
  LoraMatrix matrix;
  int row0 = 0, rows = 0, in = 0;
};
// The config's adapted projections of one block, in target order (empty without an adapter).
std::vector<LoraSite> lora_sites(const ModelConfig& c);

// The adapter's part of a Linear layer's forward pass, for one site:
//   x (N, site.in)  the layer's input (dropped out, when the adapter has dropout)
//   u (N, R)        = x A^T, kept for the backward pass
//   out (N, OC)     columns [row0, row0 + rows) += s * u B^T
//   tmp (N, rows)   scratch
void lora_forward(float* out, int OC, const float* x, float* u, float* tmp, int N, const LoraSite& site, int R,
                  float s, const float* A, const float* B);
// Its backward pass, accumulating (+=): given dout (N, OC),
//   dB (rows, R) += s * dout_site^T u;  du = s * dout_site B;  dA (R, in) += du^T x;
//   dx (N, in) += (du A) * mask (mask (N, in): the dropout's scaled keep mask, or null; dx may be null).
// tmp (N, rows), du (N, R) and, with a mask, tmpx (N, in) are scratch.
void lora_backward(float* dx, float* dA, float* dB, const float* dout, int OC, const float* x, const float* u,
                   const float* mask, float* tmp, float* du, float* tmpx, int N, const LoraSite& site, int R, float s,
                   const float* A, const float* B);

// Other tools' files (PEFT, llama.cpp) hold one adapter per projection of theirs, which may fuse several of our
// targets (GPT's q|k|v). A part: one of our targets inside such a projection, its rows [offset, offset + rows) of
// it in our row order; `row_of` maps such a row to the file's row (identity where the file keeps our order).
struct LoraPart {
  LoraTarget target = LoraTarget::q;
  int offset = 0, rows = 0;
};
using LoraRowMap = std::function<std::int64_t(std::int64_t)>;

// Export: the adapter (`p`, a model's view; `lora`, its config) of the parts it adapts, of block `layer`, as one
// adapter of the projection (rows x in): rank r = n R for n adapted parts, A (r, in) the parts' A stacked, B (rows, r)
// each part's B on its rows (row_of) and its own R columns (block-diagonal), zero elsewhere: the same function at
// scale alpha / R. r = 0 (A, B empty) when it adapts none of them.
struct StackedLora {
  int r = 0;
  std::vector<float> A, B;
};
StackedLora stack_lora(const ConstParamView& p, const LoraConfig& lora, int layer, const std::vector<LoraPart>& parts,
                       int rows, int in, const LoraRowMap& row_of);

// An adapter read from another tool's file (PEFT, llama.cpp), one target of one block at a time:
//   A (r, site.in), B (site.rows, r) in our row order, scale the file's alpha / r for it; `fused`: the file's module
//   held several of our targets (their A shared).
struct LoraPiece {
  int layer = 0;
  LoraTarget target = LoraTarget::q;
  int r = 0;
  double scale = 0.0;
  bool fused = false;
  std::vector<float> A, B;
};
// `base` (no adapter) with the pieces as its adapter: when every piece is unfused with one rank and one scale, rank
// r and alpha = scale r as in the file; otherwise rank = the largest r (smaller ones padded with zero rows of A and
// columns of B) at scale 1, each piece's own scale folded into its B. Targets = those of the pieces; a site without
// a piece keeps B = 0. InputError naming `source` for an empty list or a config the result cannot validate.
// Import: the pieces of one file projection of block `layer` (A (r, in), B (rows, r) in the file's row order, scale
// alpha / r), one per part, appended to `out`; a fused projection's A serves each of its parts.
void split_lora(int layer, const std::vector<LoraPart>& parts, int r, double scale, const std::vector<float>& A,
                const std::vector<float>& B, const LoraRowMap& row_of, std::vector<LoraPiece>& out);
std::unique_ptr<Transformer> model_with_adapter(const Transformer& base, const std::vector<LoraPiece>& pieces,
                                                float dropout, const std::string& source);

// The base model under the adapter: the same weights without the adapter's tensors (a model without one is copied).
std::unique_ptr<Transformer> base_of(const Transformer& model);
// The model with its adapter folded into the base weights (W[rows] += s B A, accumulated in double) and no
// adapter; its config loses `lora`. The model itself is unchanged. A model without an adapter is copied.
std::unique_ptr<Transformer> merge_lora(const Transformer& model);

}  // namespace stretch
