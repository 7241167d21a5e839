#!/usr/bin/env bash
# Copies the record of studies/retrieval_by_method.sh (no weights) beside docs/RESULTS.md: per finished method
# <m>/metrics.jsonl and the final checkpoint's config.json, and every report (passkey-*, needle-*, ppl-*, ext-*:
# .json, .txt, .csv; <m>.time, <m>.train.txt). Copying it back (cp -r DEST/. OUT/) lets the study skip what is done.
#   studies/retrieval_by_method_publish.sh [OUT] [DEST]   (defaults: runs/retrieval-by-method
#                                                          docs/results/retrieval-by-method)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/retrieval-by-method}
DEST=${2:-docs/results/retrieval-by-method}
mkdir -p "$DEST"
n=0
for dir in "$OUT"/*/; do
  m=$(basename "$dir")
  grep -qs '"final":true' "$dir/metrics.jsonl" || continue
  mkdir -p "$DEST/$m"
  cp "$dir/metrics.jsonl" "$DEST/$m/"
  latest=$(cat "$dir/checkpoints/latest" 2>/dev/null || true)
  [ -n "$latest" ] && [ -f "$dir/checkpoints/$latest/config.json" ] && cp "$dir/checkpoints/$latest/config.json" "$DEST/$m/"
  for f in "$OUT/$m.time" "$OUT/$m.train.txt" "$OUT"/{passkey,needle,ppl}-"$m".{json,txt,csv} "$OUT"/ext-"$m"-*.{json,txt} "$OUT"/ppl-ext-"$m"-*.{json,txt}; do
    [ -f "$f" ] && cp "$f" "$DEST/"
  done
  n=$((n + 1))
done
[ -f "$OUT/passkey-heatmap.png" ] && cp "$OUT/passkey-heatmap.png" "$DEST/"
echo "published $n finished runs of $OUT to $DEST"
