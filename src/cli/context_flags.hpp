// The flags that say how positions become attention (model/config.hpp's context fields), shared by train,
// finetune and eval: --rope-scaling, --attn-window, --logn, --positions. Unset flags keep what the model
// (or the checkpoint) has.
#pragma once
#include <string>
#include <vector>

#include "model/config.hpp"

namespace CLI {
class App;
}

namespace stretch::cli {

struct ContextFlags {
  std::string rope_scaling, logn, positions;
  int attn_window = -1;  // -1: unset
  // fine-tuning-free extension (eval, passkey, generate only: add_extension_flags)
  std::string self_extend, rerope, alibi_interp;
  bool alibi_interp_auto() const { return alibi_interp == "auto"; }
};

void add_context_flags(CLI::App& app, ContextFlags& f);
// --self-extend G,W, --rerope W[,K] and --alibi-interp L|auto (position/extension.hpp, position/alibi.hpp).
void add_extension_flags(CLI::App& app, ContextFlags& f);
// A short description of a config's context settings for reports: "rope yarn:4 self-extend:4,128", "alibi
// alibi-interp:2048", "alibi alibi-interp:auto".
std::string describe_context(const ModelConfig& c, const ContextFlags& f);
// Parses the set flags into c (UsageError naming the flag for a bad value).
void apply_context_flags(const ContextFlags& f, ModelConfig& c);
// The same as run-time overrides of a checkpoint's config (eval, generate): then validates the result, a
// UsageError naming `source` (the checkpoint) when the overrides do not fit the model.
void override_context(const ContextFlags& f, ModelConfig& c, const std::string& source);

// --lengths 256,512,1024: UsageError naming --lengths for anything but positive integers up to 2^22.
std::vector<int> parse_lengths(const std::string& s);
// --up-to 16x (or 16): the multiple N, UsageError naming --up-to unless 1 <= N <= 4096. The lengths are then
// L, 2L, 4L, ... up to N L for each model's training length L (up_to_lengths).
int parse_up_to(const std::string& s);
std::vector<int> up_to_lengths(int train_length, int up_to);

// --doc-sep '\n\n' typed on a shell arrives as backslash-n: turns \n, \t and \\ into the characters.
std::string unescape(const std::string& s);

}  // namespace stretch::cli
