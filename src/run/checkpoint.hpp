// Checkpoints of a run.
//
// A run directory holds:
//   metrics.jsonl                      one JSON object per logged step / evaluation
//   checkpoints/step-00001000/         one complete checkpoint:
//       config.json                    {"format": "stretch-checkpoint", "version": 1, "model": {...},
//                                       "tokenizer": {...}, "train_length": L}
//       model.safetensors              the weights (names in docs/MODEL.md), loadable by safetensors/PyTorch
//       optimizer.safetensors          AdamW moments "m.<name>", "v.<name>" of the tensors that train (all, or a
//                                      LoRA fine-tune's adapter and --train-also groups); or, when they are all zero (an
//                                      imported or fresh model), no tensors and the metadata {"moments": "zero"}
//       state.json                     step, tokens seen, data RNG state, elapsed time, the training options
//   checkpoints/latest                 the name of the newest complete checkpoint (for people and scripts)
// A checkpoint is written into a temporary folder checkpoints/.tmp-step-N-<pid> (every file written to its own
// temporary, fsynced and renamed; then the folder fsynced), renamed into place (atomic; the parent folder is
// fsynced), and only then named in `latest` (written atomically too). A step-* folder therefore exists only
// whole: a crash (SIGKILL, power loss) at any moment leaves the previous checkpoints loadable, and at worst a
// hidden .tmp-* folder that the next save or resume removes. Older checkpoints beyond `keep` are removed
// afterwards, each renamed out of the step-* names first, so a crash during pruning never leaves a half-deleted
// step folder; the checkpoint just written is never pruned. A write error (full disk, file-size limit, EIO)
// throws IoError naming the file and the OS error, removes the temporary folder and keeps the previous
// checkpoints. Parameters or moments holding NaN/Inf are never written (NumericError).
// One run directory has one writer at a time.
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/buffer.hpp"
#include "model/transformer.hpp"

namespace stretch {

struct TrainState {
  long step = 0;             // optimizer steps completed
  long tokens_seen = 0;
  std::array<std::uint64_t, 4> data_rng{};
  double elapsed_s = 0.0;
  long skipped_steps = 0;    // steps skipped for non-finite values (--nonfinite skip)
  nlohmann::json options;    // the training options, to check a resume against
};

struct CheckpointMeta {
  ModelConfig model;
  nlohmann::json tokenizer;
  int train_length = 0;
  std::filesystem::path dir;  // the checkpoint folder itself
};

// Writes a new checkpoint under run_dir/checkpoints (see above); IoError on failure, previous one kept. The
// weights and the moments m, v (laid out as model.params()) are streamed from their slabs, never copied.
void save_checkpoint(const std::filesystem::path& run_dir, const Transformer& model, const nlohmann::json& tokenizer,
                     int train_length, const TrainState& state, const Buffer<float>& m, const Buffer<float>& v,
                     int keep = 2);
// The same for AdamW moments that are all zero (an imported or fresh model), without any moment buffer: the
// optimizer.safetensors written holds no tensors and the metadata {"moments": "zero"}.
void save_checkpoint(const std::filesystem::path& run_dir, const Transformer& model, const nlohmann::json& tokenizer,
                     int train_length, const TrainState& state, int keep = 2);

// A run directory (its newest complete checkpoint, by step number) or a checkpoint folder -> the checkpoint
// folder. InputError saying what was expected when it is neither.
std::filesystem::path resolve_checkpoint(const std::filesystem::path& p);

// The step of a folder named step-N (N decimal), else -1.
long checkpoint_step(const std::filesystem::path& dir);

// A step-N folder holding config.json, model.safetensors, optimizer.safetensors and state.json.
bool is_complete_checkpoint(const std::filesystem::path& dir);

// The complete checkpoints of a run directory, oldest first (empty when there is none).
std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& run_dir);

// Removes what interrupted writes leave under run_dir/checkpoints: .tmp-* folders of processes no longer
// running, temporaries of `latest`, and step-* folders that are not complete. Never touches a complete one.
void remove_checkpoint_debris(const std::filesystem::path& run_dir);

// Reads config.json (InputError naming the file and field on any problem).
CheckpointMeta read_checkpoint_meta(const std::filesystem::path& run_or_checkpoint);

// Builds the model and loads its weights, checking every tensor's name and shape against the config. The file is
// mapped and each tensor's pages released once converted, so the file adds only about one tensor to the peak.
// Each tensor's bytes are verified against the checksum stored with them (InputError on a mismatch; io/safetensors)
// and its values must be finite (NumericError naming the file and the tensor: a NaN weight makes every result nan).
// With WeightStorage::bf16 (inference: model/transformer.hpp) each matrix is read into its place in the fp32 slab,
// checked, rounded into the bf16 copy and its fp32 pages released before the next one, so the load peaks at the
// bf16 weights plus one tensor.
std::unique_ptr<Transformer> load_model(const CheckpointMeta& meta, WeightStorage storage = WeightStorage::fp32);
// For inference and export: load_model, with a LoRA fine-tune's adapter folded into the weights (merge_lora,
// model/lora.hpp), so every kernel and exporter sees a plain model. A LoRA run in bf16 is merged in fp32 first
// (its load peaks at the fp32 weights) and then kept in bf16.
std::unique_ptr<Transformer> load_model_merged(const CheckpointMeta& meta,
                                               WeightStorage storage = WeightStorage::fp32);

// The training options stored in state.json (TrainOptions::to_json; an import's origin), without the optimizer state.
// InputError naming the file when it is malformed.
nlohmann::json read_checkpoint_options(const CheckpointMeta& meta);

// Loads state.json and optimizer.safetensors into state, m and v (sized like model.params(); zeros for a file
// marked {"moments": "zero"}, and for the tensors model.trainable() says are frozen). InputError naming the file and
// the tensor when a moment is missing or one more is there.
void load_train_state(const CheckpointMeta& meta, const Transformer& model, TrainState& state, Buffer<float>& m,
                      Buffer<float>& v);

}  // namespace stretch
