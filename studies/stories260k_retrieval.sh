#!/usr/bin/env bash
# Past perplexity on stories260K (llama2.c, trained at 512): perplexity and passkey retrieval at 512 .. 8192 with
# no scaling, linear / ntk / yarn (s = T / 512), Self-Extend (G = T / 256, W = 128) and ReRoPE (W = 256; leaky
# with K = s), all without fine-tuning; then whether it retrieves at all within its trained 512 tokens.
# Perplexity: docs/RESULTS.md's protocol (valid.txt split at "\n\n", stories stripped, BOS each; chunked windows).
# Passkey: docs/RETRIEVAL.md (5 depths x 2 trials per length, seed 1; 5 depths x 10 trials at 160 .. 512).
# Results: docs/RESULTS.md; runs and JSON under runs/retrieval/ (finished pieces are kept: rerun to continue).
# Usage: studies/stories260k_retrieval.sh [DATA_DIR]   (default ../shared/data); needs build/stretch.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
S=build/stretch
OUT=runs/retrieval
mkdir -p "$OUT"
T1=(--threads 1)
[ -d "$OUT/stories260K/checkpoints" ] ||
  $S import llama2c "$DATA/llama2c/stories260K.bin" --tokenizer "$DATA/llama2c/tok512.bin" --out "$OUT/stories260K"
M="$OUT/stories260K"

source studies/stories260k_flags.sh  # flags METHOD T

for method in none linear ntk yarn self-extend rerope leaky-rerope; do
  for T in 512 1024 2048 4096 8192; do
    f=$(flags $method $T)
    name="$method-$T"
    [ -f "$OUT/ppl-$name.json" ] ||
      { $S eval "$M" --text "$DATA/tinystories/valid.txt" --doc-sep '\n\n' --protocol chunked --lengths $T $f \
          "${T1[@]}" --json "$OUT/ppl-$name.json.tmp" | tee "$OUT/ppl-$name.txt" && mv "$OUT/ppl-$name.json.tmp" "$OUT/ppl-$name.json"; }
    [ -f "$OUT/passkey-$name.json" ] ||
      { $S passkey "$M" --lengths $T --trials 2 $f "${T1[@]}" --json "$OUT/passkey-$name.json.tmp" |
          tee "$OUT/passkey-$name.txt" && mv "$OUT/passkey-$name.json.tmp" "$OUT/passkey-$name.json"; }
  done
done

# within the trained length: more trials, and the decoded answers kept
[ -f "$OUT/passkey-within-512.json" ] ||
  { $S passkey "$M" --lengths 160,256,384,512 --trials 10 "${T1[@]}" --json "$OUT/passkey-within-512.json.tmp" \
      --csv "$OUT/passkey-within-512.csv" --plot "$OUT/passkey-within-512.png" | tee "$OUT/passkey-within-512.txt" &&
    mv "$OUT/passkey-within-512.json.tmp" "$OUT/passkey-within-512.json"; }
echo "done: python3 studies/stories260k_retrieval_tables.py prints the tables"
