#!/usr/bin/env bash
# The probes behind the main job's settings (README, "The main job's settings"): ALiBi and sinusoidal on the
# main job's data (data/austen-train.txt, data/austen-valid.txt: run scripts/demo.sh once first) at L = 128 under
# each setting, and the final validation perplexity of each. One core per training, two at a time.
#   studies/demo_settings.sh [OUT]          (default OUT runs/demo-settings; about 45 minutes on 2 cores)
# A finished training (final line in metrics.jsonl) is kept and only reported.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/demo-settings}
S=${STRETCH:-build/stretch}
for f in data/austen-train.txt data/austen-valid.txt; do [ -s "$f" ] || { echo "missing $f: run scripts/demo.sh first" >&2; exit 3; }; done
mkdir -p "$OUT"
train() {  # name core flags...
  local name=$1 core=$2
  shift 2
  grep -qs '"final":true' "$OUT/$name/metrics.jsonl" && return 0
  rm -rf "${OUT:?}/$name"
  OMP_PROC_BIND=true OMP_PLACES="{$core}" "$S" train --text data/austen-train.txt --valid-text data/austen-valid.txt \
    --out "$OUT/$name" --length 128 --layers 4 --eval-interval 0 --ckpt-interval 0 --threads 1 --quiet "$@" \
    > "$OUT/$name.log" 2>&1 || { echo "training $name failed:" >&2; cat "$OUT/$name.log" >&2; return 1; }
}
both() {  # two trainings side by side (each "name core flags..." as one quoted word list); fails if either does
  local pid
  eval "train $1" &
  pid=$!
  eval "train $2"
  wait "$pid"
}
W256=(--width 256 --heads 8)
W128=(--width 128 --heads 4 --batch 16 --steps 2000 --lr 3e-3 --warmup 100)
for m in alibi sinusoidal; do
  both "$m-w256-400 0 --position $m ${W256[*]} --batch 16 --steps 400 --lr 2e-3 --warmup 40" \
       "$m-w256-400-sqrt 1 --position $m ${W256[*]} --batch 16 --steps 400 --lr 2e-3 --warmup 40 --embed-scale sqrt"
  both "$m-w256-b8-sqrt 0 --position $m ${W256[*]} --batch 8 --steps 800 --lr 2e-3 --warmup 80 --embed-scale sqrt" \
       "$m-w128 1 --position $m ${W128[*]}"
  train "$m-w128-sqrt" 0 --position $m "${W128[@]}" --embed-scale sqrt
done
printf '%-24s %10s\n' run val_ppl
for d in "$OUT"/*/; do
  n=$(basename "$d")
  printf '%-24s %10s\n' "$n" "$(sed -n 's/.*"final":true.*"val_ppl":\([0-9.]*\).*/\1/p' "$d/metrics.jsonl" | cut -c1-6)"
done
