// The training job's validation loss: the nonoverlapping protocol of run/evaluator.hpp at the training
// length, optionally limited to the first max_tokens scored tokens.
#pragma once
#include <cstdint>
#include <vector>

#include "model/transformer.hpp"

namespace stretch {

struct LossResult {
  double sum_nll = 0.0;  // nats
  long count = 0;
  double mean() const { return count ? sum_nll / static_cast<double>(count) : 0.0; }
};

// This process's share (shard of shards, run/evaluator.hpp EvalSettings) of the nonoverlapping NLL; the shards'
// results add up to the whole.
LossResult evaluate_nonoverlapping(Transformer& model, const std::vector<std::int32_t>& tokens, int T, int batch,
                                   long max_tokens = 0, int shard = 0, int shards = 1);

}  // namespace stretch
