#!/usr/bin/env bash
# kaiokendev's and LongLoRA's recipe at our scale: stories260K (llama2.c, trained at 512) extended to 2048 by LoRA
# fine-tuning, against the full fine-tunes of studies/stories260k_context.sh (same data, length, batch, steps and
# warm-up: 200 steps of 4 x 2048 tokens of tinystories/train.txt, validation on valid.txt every 50 steps).
#   runs: yarn x4 and linear x4, each with a rank-8 adapter on q,k,v,o alone and with --train-also embed,norm
#         (LongLoRA's finding: at long context LoRA needs the embeddings and norms too); yarn x4 with ranks 4 and 16
#         (with embed,norm); alpha = 2 R (LongLoRA's r 8 / alpha 16), lr 1e-3 (full fine-tunes: 3e-4)
#   then every fine-tune evaluated at 256 .. 4096 with the chunked protocol of docs/RESULTS.md
# Usage: studies/stories260k_lora.sh [DATA_DIR]   (default ../shared/data); STRETCH=path picks the binary (default
# build/stretch; a copy keeps a rebuild from changing it under a running study). Runs under runs/lora/; a killed
# run continues (fine-tunes resume, finished evaluations are kept). Tables: python3 studies/stories260k_lora_tables.py
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
S=${STRETCH:-build/stretch}
OUT=runs/lora
mkdir -p "$OUT"
VALID="$DATA/tinystories/valid.txt"
EVAL=(--text "$VALID" --doc-sep '\n\n' --protocol chunked)

[ -d "$OUT/stories260K/checkpoints" ] ||
  $S import llama2c "$DATA/llama2c/stories260K.bin" --tokenizer "$DATA/llama2c/tok512.bin" --out "$OUT/stories260K"

ev() {  # name model lengths [flags...]
  local name=$1 model=$2 lengths=$3
  shift 3
  [ -f "$OUT/$name.json" ] && return 0
  $S eval "$model" "${EVAL[@]}" --lengths "$lengths" --json "$OUT/$name.json.tmp" "$@" > "$OUT/$name.txt"
  mv "$OUT/$name.json.tmp" "$OUT/$name.json"
}

ft() {  # name core scaling rank [finetune flags...]
  local name=$1 core=$2 scaling=$3 rank=$4 dir="$OUT/$1" resume=()
  shift 4
  grep -qs '"final":true' "$dir/metrics.jsonl" && return 0  # finished
  [ -d "$dir/checkpoints" ] && resume=(--resume)
  /usr/bin/time -f "wall %e s, peak RSS %M KB" -o "$dir.time" \
    env OMP_PROC_BIND=true OMP_PLACES="{$core}" $S finetune "$OUT/stories260K" --text "$DATA/tinystories/train.txt" \
    --valid-text "$VALID" --doc-sep '\n\n' --length 2048 --rope-scaling "$scaling:4" --steps 200 --batch 4 \
    --lr 1e-3 --warmup 20 --threads 1 --eval-interval 50 --eval-tokens 0 --ckpt-interval 50 \
    --lora "$rank" --lora-alpha $((2 * rank)) --lora-targets q,k,v,o "$@" --out "$dir" "${resume[@]}" \
    > "$dir.log" 2>&1
}

ft yarn-r8 0 yarn 8 &
ft yarn-r8-en 1 yarn 8 --train-also embed,norm &
wait
ft linear-r8 0 linear 8 &
ft linear-r8-en 1 linear 8 --train-also embed,norm &
wait
ft yarn-r4-en 0 yarn 4 --train-also embed,norm &
ft yarn-r16-en 1 yarn 16 --train-also embed,norm &
wait

for run in yarn-r8 yarn-r8-en linear-r8 linear-r8-en yarn-r4-en yarn-r16-en; do
  ev "after-$run" "$OUT/$run" 256,512,1024,2048,4096
done
echo "done: $OUT/*.json"
