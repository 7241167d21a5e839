#!/usr/bin/env bash
# Mixed precision's accuracy over a whole run: the reference config (byte vocabulary, 6 layers, width 256,
# 8 heads, MLP 1024, T = 256, batch 16) trained for STEPS (default 2000) optimizer steps twice from the same seed
# and data order, once with fp32 products and once with --precision bf16; prints both final losses (training and
# validation) and their relative difference. The target (issue 7): the bf16 run's final loss within 1% of fp32's.
# The two trainings run at the same time, one thread each, pinned to different cores (THREADS=2 runs them one
# after the other with 2 threads each instead). Data: WikiText-2's training split (10.8 MB: 2000 steps of 4,096
# bytes see 0.76 of an epoch; TinyStories' 0.5 MB would be seen 17 times), its last 1% held out for validation.
#   bench/bf16_loss.sh [OUT]        (default OUT runs/bf16-loss; about 45 minutes of both cores)
# A killed comparison continues where it stopped (each training resumes from its last checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/bf16-loss}
DATA=${DATA:-../shared/data}
S=${STRETCH:-build/stretch}
STEPS=${STEPS:-2000}
THREADS=${THREADS:-1}
TRAIN="$DATA/wikitext/wikitext-2/wiki.train.tokens"
[ -f "$TRAIN" ] || { echo "missing $TRAIN (../shared/data beside the repository)" >&2; exit 3; }
mkdir -p "$OUT"
args=(--text "$TRAIN" --valid-fraction 0.01 --layers 6 --width 256 --heads 8 --mlp 1024 --length 256 --batch 16
      --steps "$STEPS" --lr 1e-3 --seed 1 --eval-interval 500 --ckpt-interval 250 --threads "$THREADS" --quiet)

train() {  # precision core
  local dir="$OUT/$1" resume=()
  grep -qs '"final":true' "$dir/metrics.jsonl" && return 0
  [ -d "$dir/checkpoints" ] && resume=(--resume)
  OMP_PROC_BIND=true OMP_PLACES="$2" /usr/bin/time -v -o "$dir.time" \
    "$S" train "${args[@]}" --precision "$1" --out "$dir" "${resume[@]}" > "$dir.log"
}

if [ "$THREADS" = 1 ]; then
  train fp32 '{0}' & p1=$!
  train bf16 '{1}' & p2=$!
  wait $p1
  wait $p2
else
  train fp32 cores
  train bf16 cores
fi

python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
def final(p):
    lines = [json.loads(l) for l in open(os.path.join(out, p, "metrics.jsonl"))]
    v = [l for l in lines if l.get("final") is True]
    t = [l for l in lines if "loss" in l and "elapsed_s" in l]
    if not v or not t:
        sys.exit(f"{out}/{p}/metrics.jsonl: no final validation line (the run did not finish)")
    return v[-1]["val_loss"], sum(l["loss"] for l in t[-5:]) / len(t[-5:]), t[-1]["elapsed_s"]
f, b = final("fp32"), final("bf16")
print(f"fp32: final validation loss {f[0]:.4f}, training loss (mean of the last 5 logged) {f[1]:.4f}, {f[2]/60:.1f} min (last session)")
print(f"bf16: final validation loss {b[0]:.4f}, training loss (mean of the last 5 logged) {b[1]:.4f}, {b[2]/60:.1f} min (last session)")
rel_v, rel_t = (b[0] - f[0]) / f[0], (b[1] - f[1]) / f[1]
print(f"bf16 against fp32: validation {rel_v:+.2%}, training {rel_t:+.2%} (target: within 1%)")
sys.exit(0 if abs(rel_v) <= 0.01 else 1)
PY
