#!/usr/bin/env bash
# "Train short, test long" on real data: one model per position method, same architecture, data, tokens, seed
# and budget, trained at length L on WikiText-2 and evaluated at L, 2L, 4L, 8L and 16L on WikiText-103's
# validation split with the nonoverlapping and sliding-window protocols; plus the ALiBi paper's efficiency
# claim: ALiBi trained at L against sinusoidal trained at 2L on the same tokens (perplexity at 2L, wall clock,
# peak memory). Results: docs/RESULTS.md (tables by studies/extrapolation_tables.py).
#
#   studies/extrapolation.sh [OUT]          the full study (default OUT runs/study; about 3 hours on 2 cores)
#   TINY=1 studies/extrapolation.sh OUT     a few-minute version (two methods, small model, few steps), used
#                                           by the test suite
# Killed at any point, it continues where it stopped: finished trainings are kept (their metrics.jsonl has
# the final line), unfinished ones resume from their last checkpoint, finished evaluations are kept.
# Environment: DATA (default ../shared/data), STRETCH (default build/stretch), THREADS (default 2), SEED (default 1;
# a second seed goes to its own OUT, e.g. SEED=2 studies/extrapolation.sh runs/study-seed2).
# Training wall clock here is for the record only (the machine is shared); the efficiency claim's speed and
# memory ratio is measured by bench/train_efficiency.sh, alternating the two in one invocation.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/study}
DATA=${DATA:-../shared/data}
S=${STRETCH:-build/stretch}
THREADS=${THREADS:-2}
SEED=${SEED:-1}
TRAIN="$DATA/wikitext/wikitext-2/wiki.train.tokens"
VALID="$DATA/wikitext/wikitext-103/wiki.valid.tokens"
for f in "$TRAIN" "$VALID"; do [ -f "$f" ] || { echo "missing $f (../shared/data beside the repository)" >&2; exit 3; }; done
mkdir -p "$OUT"

if [ -n "${TINY:-}" ]; then
  METHODS=(alibi sinusoidal)
  L=64; MODEL=(--layers 2 --width 64 --heads 4); BATCH=16; STEPS=300; LR=3e-3; WARMUP=30; MAXTOK=16384
else
  METHODS=(alibi sinusoidal rope t5 learned none)
  L=256; MODEL=(--layers 4 --width 256 --heads 8); BATCH=16; STEPS=1500; LR=2e-3; WARMUP=100; MAXTOK=131072
fi
# --attention materialized: every run keeps its softmax probabilities for the backward pass, as the paper's
# implementations do, so sinusoidal at 2L pays the T^2 memory the efficiency claim is about (auto would switch it
# to the tiled kernels, whose memory is linear in T)
COMMON=(--text "$TRAIN" --valid-fraction 0.01 --embed-scale sqrt --steps "$STEPS" --lr "$LR" --warmup "$WARMUP"
        --seed "$SEED" --eval-interval 0 --ckpt-interval 250 --threads "$THREADS" --quiet --attention materialized
        "${MODEL[@]}")
export OMP_PROC_BIND=${OMP_PROC_BIND:-true} OMP_PLACES=${OMP_PLACES:-cores}

train() {  # name length batch method
  local dir="$OUT/$1" resume=()
  grep -qs '"final":true' "$dir/metrics.jsonl" && return 0
  [ -d "$dir/checkpoints" ] && resume=(--resume)
  echo "== training $1 (L = $2, batch $3) =="
  /usr/bin/time -v -o "$dir.time" "$S" train "${COMMON[@]}" --position "$4" --length "$2" --batch "$3" \
    --out "$dir" "${resume[@]}" | tee "$dir.log"
}

evaluate() {  # name protocol [flags]
  local name=$1 protocol=$2
  shift 2
  [ -f "$OUT/eval-$name-$protocol.json" ] && return 0
  "$S" eval "$OUT/$name" --text "$VALID" --up-to 16x --protocol "$protocol" --max-tokens "$MAXTOK" \
    --threads "$THREADS" --json "$OUT/eval-$name-$protocol.json.tmp" "$@" | tee "$OUT/eval-$name-$protocol.txt"
  mv "$OUT/eval-$name-$protocol.json.tmp" "$OUT/eval-$name-$protocol.json"
}

for m in "${METHODS[@]}"; do
  mkdir -p "$OUT"
  train "$m" "$L" "$BATCH" "$m"
  flags=()
  [ "$m" = learned ] && flags=(--clamp-positions)  # no table rows past L: reuse the last one
  for p in nonoverlapping sliding; do evaluate "$m" "$p" "${flags[@]}"; done
done
if [ -z "${TINY:-}" ]; then
  # the efficiency claim: sinusoidal at 2L, half the windows per step, so the same tokens per step and in all
  train sinusoidal-2L $((2 * L)) $((BATCH / 2)) sinusoidal
  for p in nonoverlapping sliding; do evaluate sinusoidal-2L "$p"; done
fi
echo "done: $OUT"
