#include "run/evaluate.hpp"

#include <algorithm>

#include "run/evaluator.hpp"

namespace stretch {

LossResult evaluate_nonoverlapping(Transformer& model, const std::vector<std::int32_t>& tokens, int T, int batch,
                                   long max_tokens, int shard, int shards) {
  EvalSettings s;
  s.batch_tokens = std::max(1, batch) * T;
  s.max_tokens = max_tokens;
  s.buckets = 1;
  s.shard = shard;
  s.shards = shards;
  // a validation split shorter than one window is scored as one shorter window
  const int len = static_cast<int>(std::min<long>(T, static_cast<long>(tokens.size()) - 1));
  LengthResult r = evaluate_length(model, tokens, len, s);
  return {r.sum_nll, r.tokens};
}

}  // namespace stretch
