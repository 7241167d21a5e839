#!/usr/bin/env bash
# stories260K does not retrieve (docs/RESULTS.md: 0 of 200 passkey trials within its trained 512 tokens), so
# passkey accuracy cannot rank the context extensions on it. Here it first learns to: a fine-tune at its trained
# length 512 on TinyStories with a synthetic passkey item over half the windows (`--retrieval-mix 0.5
# --retrieval-haystack filler`, run/retrieval_data.hpp), 1,200 steps of 8 x 512 tokens, lr 1e-3; then passkey
# accuracy at 512 .. 8192 (5 depths x 4 trials, seed 1) with no extension, linear / ntk / yarn (s = T / 512),
# Self-Extend (G = T / 256, W = 128) and ReRoPE (W = 256; leaky with K = s), the settings of
# studies/stories260k_retrieval.sh, and perplexity (chunked, valid.txt) at 512 to see what the fine-tune cost.
# Results: docs/RESULTS.md; runs and JSON under runs/s260-retrieval/ (finished pieces are kept: rerun to continue).
# Usage: studies/stories260k_retrieval_finetune.sh [DATA_DIR]   (default ../shared/data); needs build/stretch.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
S=build/stretch
OUT=runs/s260-retrieval
mkdir -p "$OUT"
[ -d "$OUT/stories260K/checkpoints" ] ||
  $S import llama2c "$DATA/llama2c/stories260K.bin" --tokenizer "$DATA/llama2c/tok512.bin" --out "$OUT/stories260K"
M="$OUT/retriever"
if ! grep -q '"final":true' "$M/metrics.jsonl" 2>/dev/null; then
  resume=()
  [ -d "$M/checkpoints/latest" ] && resume=(--resume)
  /usr/bin/time -v -o "$OUT/retriever.time" $S finetune "$OUT/stories260K" --text "$DATA/tinystories/train.txt" \
    --doc-sep '\n\n' --length 512 --retrieval-mix 0.5 --retrieval-haystack filler --steps 1200 --batch 8 --lr 1e-3 \
    --eval-interval 400 --ckpt-interval 200 --keep-checkpoints 10 --out "$M" "${resume[@]}" --quiet |
    tee "$OUT/retriever.train.txt"
fi

flags() {  # method T -> the context flags of that method at length T
  local s=$(($2 / 512))
  case $1 in
    none) ;;
    linear|ntk|yarn) [ "$s" -gt 1 ] && echo "--rope-scaling $1:$s" ;;
    self-extend) echo "--self-extend $(($2 / 256)),128" ;;
    rerope) echo "--rerope 256" ;;
    leaky-rerope) [ "$s" -gt 1 ] && echo "--rerope 256,$s" || echo "--rerope 256" ;;
  esac
  return 0
}

for method in none linear ntk yarn self-extend rerope leaky-rerope; do
  for T in 512 1024 2048 4096 8192; do
    f=$(flags $method $T)
    name="$method-$T"
    [ -f "$OUT/passkey-$name.json" ] ||
      { $S passkey "$M" --lengths $T --trials 4 $f --json "$OUT/passkey-$name.json.tmp" |
          tee "$OUT/passkey-$name.txt" && mv "$OUT/passkey-$name.json.tmp" "$OUT/passkey-$name.json"; }
  done
done
for m in stories260K retriever; do
  [ -f "$OUT/ppl-$m-512.json" ] ||
    { $S eval "$OUT/$m" --text "$DATA/tinystories/valid.txt" --doc-sep '\n\n' --protocol chunked --lengths 512 \
        --json "$OUT/ppl-$m-512.json.tmp" | tee "$OUT/ppl-$m-512.txt" && mv "$OUT/ppl-$m-512.json.tmp" "$OUT/ppl-$m-512.json"; }
done
echo "done"
