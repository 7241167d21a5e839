// A LoRA adapter on its own (model/lora.hpp): our adapter file, and adapters applied to a base model.
//
// Which tensors a LoRA fine-tune trains: the adapter, and the base tensors of the --train-also groups ("embed":
// token embeddings and position tables; "norm": every norm's weight, and its bias, the tensor named like the weight
// with ".bias" for ".weight"). LongLoRA trains both groups beside the adapter.
//
// The adapter file is a safetensors file holding the adapter's tensors under their model names (h.0.lora.q.A, ...,
// model/lora.hpp), the trained base tensors in full (PEFT's modules_to_save) and, in its metadata,
//   "format": "stretch-lora", "version": "1",
//   "lora": the adapter's config {rank, alpha, targets, dropout},  "train_also": the groups ("" for none),
//   "base_model": the base model's config (model/config.hpp, without "lora"),
//   "base_xxh3": XXH3-64 of the frozen base tensors (every base tensor the file does not hold, in table order), hex,
//   "context": the context settings the adapter was trained with (rope_scaling, attn_window, logn,
//              position_ids, block_size), which the adapted model takes over.
// Applying refuses a base whose architecture differs, naming the field, and one whose frozen weights differ (another
// checkpoint of the same shape) unless told the base is meant to differ.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/transformer.hpp"

namespace stretch {

// --train-also: "embed,norm" -> its groups (UsageError naming the flag for another name or a repeat).
struct TrainAlso {
  bool embed = false, norm = false;
};
TrainAlso parse_train_also(std::string_view list);

// One flag per tensor of m.specs(): empty (everything trains) without an adapter; else the adapter and the groups.
std::vector<char> lora_trainable(const Transformer& m, const TrainAlso& also);

// Writes the adapter of `model` and the base tensors it trained with `train_also` (ConfigError when it has no
// adapter), atomically.
void save_adapter(const Transformer& model, const std::string& train_also, const std::filesystem::path& file);

// The base with the adapter of `file` on it (unmerged: the adapted model's config has the adapter's lora and
// context settings). InputError naming the file and field for a malformed file, an architecture mismatch, or
// (unless allow_other_base) base weights other than the ones the adapter was trained on.
std::unique_ptr<Transformer> apply_adapter(const Transformer& base, const std::filesystem::path& file,
                                           bool allow_other_base = false);

}  // namespace stretch
