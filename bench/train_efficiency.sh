#!/usr/bin/env bash
# The ALiBi paper's efficiency claim, measured here: ALiBi trained at L against sinusoidal trained at 2L with the
# same tokens per step (half the windows), for the study's model (4 layers, width 256, 8 heads; byte vocabulary).
# The two are run alternately ROUNDS times (default 3) in one invocation; prints the JSON lines, the medians of
# tokens/s and peak RSS, and the ratios. The perplexities belong to studies/extrapolation.sh. Both keep the
# softmax probabilities for the backward pass (--attention materialized, ATTENTION to change it), as the paper's
# implementations do: with the tiled kernels memory no longer grows with T^2 and the memory claim changes meaning.
#   bench/train_efficiency.sh [L]        (default L = 256)
set -euo pipefail
cd "$(dirname "$0")/.."
L=${1:-256}
threads=${THREADS:-2}
steps=${STEPS:-20}
rounds=${ROUNDS:-3}
model=(--layers 4 --width 256 --heads 8 --attention "${ATTENTION:-materialized}")
lines=()
for r in $(seq "$rounds"); do
  a=$(OMP_NUM_THREADS=$threads OMP_PROC_BIND=true OMP_PLACES=cores build/bench_train --position alibi \
      --length "$L" --batch 16 --steps "$steps" "${model[@]}")
  s=$(OMP_NUM_THREADS=$threads OMP_PROC_BIND=true OMP_PLACES=cores build/bench_train --position sinusoidal \
      --length $((2 * L)) --batch 8 --steps "$steps" "${model[@]}")
  echo "$a"
  echo "$s"
  lines+=("$a" "$s")
done
python3 - "${lines[@]}" <<'PY'
import json, statistics, sys
rows = [json.loads(x) for x in sys.argv[1:]]
def med(pos, key):
    return statistics.median(r[key] for r in rows if r["position"] == pos)
a, s = med("alibi", "tokens_per_s_median"), med("sinusoidal", "tokens_per_s_median")
ra, rs = med("alibi", "peak_rss_mb"), med("sinusoidal", "peak_rss_mb")
La = next(r["T"] for r in rows if r["position"] == "alibi")
print(f"alibi at L={La}: {a:.0f} tok/s, {ra:.0f} MB; sinusoidal at 2L={2 * La}: {s:.0f} tok/s, {rs:.0f} MB; "
      f"alibi is x{a / s:.2f} as fast with x{ra / rs:.2f} the memory")
PY
