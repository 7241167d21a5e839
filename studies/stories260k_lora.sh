#!/usr/bin/env bash
# kaiokendev's and LongLoRA's recipe at our scale: stories260K (llama2.c, trained at 512) extended to 2048 by LoRA
# fine-tuning, against the full fine-tunes of studies/stories260k_context.sh (same data, length, batch, steps and
# warm-up: 200 steps of 4 x 2048 tokens of tinystories/train.txt, validation on valid.txt every 50 steps).
#   runs: yarn x4 and linear x4, each with a rank-8 adapter on q,k,v,o alone and with --train-also embed,norm
#         (LongLoRA's finding: at long context LoRA needs the embeddings and norms too); yarn x4 with ranks 4 and 16
#         (with embed,norm); alpha = 2 R (LongLoRA's r 8 / alpha 16), lr 1e-3 (full fine-tunes: 3e-4)
#   with LongLoRA's shifted sparse attention (--s2-attn): yarn x4 and linear x4, rank 8 with embed,norm; and the
#         full yarn x4 fine-tune again (lr 3e-4), for its time and memory on the same host and build
#   to 4096: yarn x8, 100 steps of 4 x 4096 tokens (the same token budget), full fine-tune (lr 3e-4) against rank 8
#         with embed,norm, with and without --s2-attn (lr 1e-3), side by side one thread each (time and peak RSS);
#         rank 8 alone and rank 16 with embed,norm; linear x8, full against rank 8 with embed,norm
#   then every fine-tune evaluated at 256 .. 4096 (the 4096 ones to 8192) with the chunked protocol of
#   docs/RESULTS.md
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

source studies/stories260k_common.sh
import_stories260k

ft() {  # name core scaling:factor rank length steps [finetune flags...]   (rank 0: a full fine-tune, lr 3e-4)
  local name=$1 core=$2 scaling=$3 rank=$4 length=$5 steps=$6 dir="$OUT/$1" resume=() lora=(--lr 3e-4)
  shift 6
  [ "$rank" -gt 0 ] && lora=(--lora "$rank" --lora-alpha $((2 * rank)) --lora-targets q,k,v,o --lr 1e-3)
  grep -qs '"final":true' "$dir/metrics.jsonl" && return 0  # finished
  [ -d "$dir/checkpoints" ] && resume=(--resume)
  /usr/bin/time -f "wall %e s, peak RSS %M KB" -o "$dir.time" \
    env OMP_PROC_BIND=true OMP_PLACES="{$core}" $S finetune "$OUT/stories260K" --text "$DATA/tinystories/train.txt" \
    --valid-text "$VALID" --doc-sep '\n\n' --length "$length" --rope-scaling "$scaling" --steps "$steps" --batch 4 \
    --warmup $((steps / 10)) --threads 1 --eval-interval $((steps / 4)) --eval-tokens 0 --ckpt-interval $((steps / 4)) \
    "${lora[@]}" "$@" --out "$dir" "${resume[@]}" > "$dir.log" 2>&1
}

ft yarn-r8 0 yarn:4 8 2048 200 &
ft yarn-r8-en 1 yarn:4 8 2048 200 --train-also embed,norm &
wait
ft linear-r8 0 linear:4 8 2048 200 &
ft linear-r8-en 1 linear:4 8 2048 200 --train-also embed,norm &
wait
ft yarn-r4-en 0 yarn:4 4 2048 200 --train-also embed,norm &
ft yarn-r16-en 1 yarn:4 16 2048 200 --train-also embed,norm &
wait
ft yarn-r8-en-s2 0 yarn:4 8 2048 200 --train-also embed,norm --s2-attn &
ft linear-r8-en-s2 1 linear:4 8 2048 200 --train-also embed,norm --s2-attn &
wait
# to 4096: the same token budget (100 steps of 4 x 4096)
ft 4096-full 0 yarn:8 0 4096 100 &
ft 4096-r8-en 1 yarn:8 8 4096 100 --train-also embed,norm &
wait
# the full fine-tune at 2048 again, on this host and build (time and memory beside the LoRA runs'), and S2 at 4096
ft yarn-full 0 yarn:4 0 2048 200 &
ft 4096-r8-en-s2 1 yarn:8 8 4096 100 --train-also embed,norm --s2-attn &
wait
# to 4096 with linear x8 (full against rank 8 with embed,norm), and yarn x8 with rank 8 alone and rank 16
ft 4096-linear-full 0 linear:8 0 4096 100 &
ft 4096-linear-r8-en 1 linear:8 8 4096 100 --train-also embed,norm &
wait
ft 4096-r8 0 yarn:8 8 4096 100 &
ft 4096-r16-en 1 yarn:8 16 4096 100 --train-also embed,norm &
wait

for run in yarn-full yarn-r8 yarn-r8-en linear-r8 linear-r8-en yarn-r4-en yarn-r16-en yarn-r8-en-s2 linear-r8-en-s2; do
  ev "after-$run" "$OUT/$run" 256,512,1024,2048,4096
done
for run in 4096-full 4096-r8-en 4096-r8-en-s2 4096-linear-full 4096-linear-r8-en 4096-r8 4096-r16-en; do
  ev "after-$run" "$OUT/$run" 512,1024,2048,4096,8192
done
echo "done: $OUT/*.json"
