#!/usr/bin/env bash
# Extending a pretrained RoPE model's context: stories260K (llama2.c, trained at 512) on TinyStories.
#   1. import the llama2.c checkpoint and its tokenizer
#   2. evaluate it without fine-tuning at 256 .. 4096 with every RoPE scaling (s = T / 512)
#   3. fine-tune at 2048 with linear x4 and with yarn x4 on tinystories/train.txt (200 and 400 steps of 4 x 2048
#      tokens; each run has its own cosine schedule)
#   4. evaluate the fine-tuned models at 256 .. 4096 (their stored scaling; at 4096 also s = 8)
# Protocol (../shared/REFERENCE.md): valid.txt split at "\n\n", each story stripped and preceded by BOS, chunked
# windows (the first token of each window is context only). Results: docs/RESULTS.md; runs under runs/ctx/.
# Usage: studies/stories260k_context.sh [DATA_DIR]   (default ../shared/data); needs build/stretch.
# A killed run continues: finished evaluations are kept (runs/ctx/*.json) and fine-tunes resume.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
S=build/stretch
OUT=runs/ctx
mkdir -p "$OUT"
VALID="$DATA/tinystories/valid.txt"
EVAL=(--text "$VALID" --doc-sep '\n\n' --protocol chunked)

source studies/stories260k_common.sh
import_stories260k

# 2. no fine-tuning
ev before-none "$OUT/stories260K" 256,512,1024,2048,4096
for s in linear ntk dynamic-ntk yarn yarn-paper; do
  for T in 1024 2048 4096; do
    ev "before-$s-$T" "$OUT/stories260K" $T --rope-scaling $s:$((T / 512))
  done
done

# 3. fine-tunes (1 thread each, one per core, side by side)
ft() {  # scaling core steps
  local dir="$OUT/ft-$1-x4$([ "$3" = 200 ] || echo "-$3")" resume=()
  grep -qs '"final":true' "$dir/metrics.jsonl" && return 0  # finished
  [ -d "$dir/checkpoints" ] && resume=(--resume)
  OMP_PROC_BIND=true OMP_PLACES="{$2}" $S finetune "$OUT/stories260K" --text "$DATA/tinystories/train.txt" --valid-text "$VALID" \
    --doc-sep '\n\n' --length 2048 --rope-scaling "$1:4" --steps "$3" --batch 4 --lr 3e-4 --warmup 20 \
    --threads 1 --eval-interval 50 --eval-tokens 0 --ckpt-interval 50 --out "$dir" "${resume[@]}" > "$dir.log" 2>&1
}
for steps in 200 400; do
  ft linear 0 $steps &
  ft yarn 1 $steps &
  wait
done

# 4. after fine-tuning
for s in linear yarn; do
  for run in "ft-$s-x4" "ft-$s-x4-400"; do
    ev "after-${run#ft-}" "$OUT/$run" 256,512,1024,2048,4096
    ev "after-${run#ft-}-4096-s8" "$OUT/$run" 4096 --rope-scaling $s:8
  done
done
echo "done: $OUT/*.json"
