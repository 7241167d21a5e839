// Checkpoints of a run.
//
// A run directory holds:
//   metrics.jsonl                      one JSON object per logged step / evaluation
//   checkpoints/step-00001000/         one complete checkpoint:
//       config.json                    {"format": "stretch-checkpoint", "version": 1, "model": {...},
//                                       "tokenizer": {...}, "train_length": L}
//       model.safetensors              the weights (names in docs/MODEL.md), loadable by safetensors/PyTorch
//       optimizer.safetensors          AdamW moments "m.<name>", "v.<name>"
//       state.json                     step, tokens seen, data RNG state, elapsed time, the training options
//   checkpoints/latest                 the name of the newest complete checkpoint
// A checkpoint is written into a temporary folder (every file fsynced), renamed into place (atomic), and only
// then named in `latest` (written atomically too), so a crash at any moment leaves the previous checkpoint
// loadable. Older checkpoints beyond `keep` are removed afterwards.
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/buffer.hpp"
#include "model/transformer.hpp"

namespace stretch {

struct TrainState {
  long step = 0;             // optimizer steps completed
  long tokens_seen = 0;
  std::array<std::uint64_t, 4> data_rng{};
  double elapsed_s = 0.0;
  nlohmann::json options;    // the training options, to check a resume against
};

struct CheckpointMeta {
  ModelConfig model;
  nlohmann::json tokenizer;
  int train_length = 0;
  std::filesystem::path dir;  // the checkpoint folder itself
};

// Writes a new checkpoint under run_dir/checkpoints (see above); IoError on failure, previous one kept.
void save_checkpoint(const std::filesystem::path& run_dir, const Transformer& model, const nlohmann::json& tokenizer,
                     int train_length, const TrainState& state, const Buffer<float>& m, const Buffer<float>& v,
                     int keep = 2);

// A run directory (its newest complete checkpoint) or a checkpoint folder -> the checkpoint folder.
// InputError saying what was expected when it is neither.
std::filesystem::path resolve_checkpoint(const std::filesystem::path& p);

// Reads config.json (InputError naming the file and field on any problem).
CheckpointMeta read_checkpoint_meta(const std::filesystem::path& run_or_checkpoint);

// Builds the model and loads its weights, checking every tensor's name and shape against the config.
std::unique_ptr<Transformer> load_model(const CheckpointMeta& meta);

// Loads state.json and optimizer.safetensors into state, m and v (sized like model.params()).
void load_train_state(const CheckpointMeta& meta, const Transformer& model, TrainState& state, Buffer<float>& m,
                      Buffer<float>& v);

}  // namespace stretch
