// The training job's data: the tokenizer (a fine-tune's comes from its checkpoint, else byte or GPT-2 BPE by
// name), the corpus as tokens (through the token cache), the validation split, and the random windows of a step.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/rng.hpp"
#include "io/corpus.hpp"
#include "io/tokenizer.hpp"

namespace stretch {

struct TrainOptions;

// "byte" or "gpt2" (encoder.json + vocab.bpe in bpe_dir); UsageError naming --tokenizer / --bpe-dir otherwise.
std::unique_ptr<Tokenizer> named_tokenizer(const std::string& name, const std::filesystem::path& bpe_dir);

struct TrainData {
  std::vector<std::int32_t> train, val;
  CorpusStats stats;  // of the training text
};

// The training text as `tok` tokens (opt.doc_separator splits documents, each after the tokenizer's BOS), and the
// validation split: opt.valid_text, else the last opt.valid_fraction of the tokens. InputError when the training
// tokens cannot fill one window of opt.model.block_size + 1, or the validation split has fewer than 2.
TrainData load_train_data(const TrainOptions& opt, const Tokenizer& tok);

// The windows of one micro-batch: every rank draws all `batch` starts from the same RNG stream (so N ranks follow
// one rank's run) and copies its own `local` rows [rank * local, (rank + 1) * local) into x (inputs) and y
// (targets, shifted by one), each (local, T).
void draw_windows(const std::vector<std::int32_t>& tokens, int T, int batch, int local, int rank, Rng& rng,
                  std::vector<std::int32_t>& x, std::vector<std::int32_t>& y);

}  // namespace stretch
